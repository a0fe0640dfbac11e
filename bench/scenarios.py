"""Worker-side scenario code: what each client process does with its pairs.

Roles: in every pair peer A (role 0) originates measurement messages and peer B
(role 1) echoes each one back unchanged, so a round trip is measured on one
clock. Everything the harness sends is an MCP ``candidate`` message (plus one
``offer``/``answer`` per pair), so it works on any server speaking the protocol.
Server events the harness does not need (joined, peer-joined, info, peer-left,
leave) are counted and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.runner import WorkerCtx
from bench.stats import SeqTracker
from bench.wsclient import Peer, connect_peer, error_kind, room_url, tls_context

monotonic_ns = time.monotonic_ns

#: ``seq`` then ``t`` (send time, ns): our server relays bytes as sent, a server that
#: re-serialises JSON (the Channels baseline) adds spaces; both match.
MEASURE_RE = re.compile(rb'"seq": ?(\d+), ?"t": ?(\d+)')
CANDIDATE = (
    b"candidate:842163049 1 udp 1677729535 192.0.2.10 54321 typ srflx "
    b"raddr 0.0.0.0 rport 0 generation 0 ufrag Bx4f network-cost 999"
)
FAKE_SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\na=ice-ufrag:Bx4f\r\na=ice-pwd:0123456789abcdef0123456789\r\n"
    "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
    "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\n"
    "a=mid:0\r\na=sctp-port:5000\r\n"
)
EXCHANGE_CANDIDATES = 2

IDLE, CLOSED_LOOP, OPEN_LOOP = 0, 1, 2


def measure_message(seq: int, t_ns: int) -> bytes:
    return b'{"type":"candidate","seq":%d,"t":%d,"candidate":"%s","sdpMid":"0"}' % (
        seq,
        t_ns,
        CANDIDATE,
    )


def control(kind: str, **fields: Any) -> bytes:
    msg: dict[str, Any] = {"type": "candidate", "k": kind}
    msg.update(fields)
    return json.dumps(msg, separators=(",", ":")).encode()


def is_room_full(msg: dict[str, Any]) -> bool:
    return msg.get("code") == "room_full" or "full" in str(msg.get("message", "")).lower()


class ProcStats:
    """Per-process accumulators (sent back to the main process as plain data)."""

    def __init__(self) -> None:
        self.rtt_ns = array("q")
        self.deliveries = 0
        self.sent = 0
        self.errors: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        #: monotonic_ns of the last echo A received: the end of a closed-loop measuring
        #: window (not the end of a drain that waited for messages that never came).
        self.last_echo_ns = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rtt_ns": self.rtt_ns.tobytes(),
            "deliveries": self.deliveries,
            "last_echo_ns": self.last_echo_ns,
            "sent": self.sent,
            "errors": dict(self.errors),
            "events": dict(self.events),
        }


class Pair:
    """Two peers in one room, driven by callbacks (no task per message)."""

    def __init__(self, index: int, room: str, stats: ProcStats, on_done: Callable[[Pair], None]):
        self.index = index
        self.room = room
        self.stats = stats
        self.on_done = on_done
        self.a: Peer | None = None
        self.b: Peer | None = None
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.exchanged: asyncio.Future[None] = loop.create_future()
        self.room_full = False
        self.peer_joined_seen = False
        self._reset_exchange()
        self.reset_measure()

    def _reset_exchange(self) -> None:
        self.a_answer = False
        self.b_offer = False
        self.a_x = 0
        self.b_x = 0

    def reset_measure(self) -> None:
        self.mode = IDLE
        self.a_track = SeqTracker()  # echoes seen by A
        self.b_track = SeqTracker()  # originals seen by B
        self.sent = 0
        self.echoed = 0
        self.limit = 0
        self.deadline_ns = 0
        self.finished = False
        self.stopped = False
        self.interval_ns = 0
        self.next_ns = 0
        self.end_ns = 0
        self.timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ callbacks
    def on_message(self, peer: Peer, data: bytes) -> None:
        m = MEASURE_RE.search(data)
        if m is not None:
            stats = self.stats
            stats.deliveries += 1
            if peer.role == 1:
                self.b_track.observe(int(m.group(1)))
                peer.send(data)
            else:
                now = monotonic_ns()
                stats.last_echo_ns = now
                stats.rtt_ns.append(now - int(m.group(2)))
                self.a_track.observe(int(m.group(1)))
                self.echoed += 1
                self._after_echo()
            return
        self._on_control(peer, data)

    def on_closed(self, peer: Peer) -> None:
        if self.mode != IDLE and not self.finished:
            self.stats.errors["closed_during_run"] += 1
            self.finish()

    def _on_control(self, peer: Peer, data: bytes) -> None:
        stats = self.stats
        try:
            msg = json.loads(data)
        except ValueError:
            stats.errors["bad_json_from_server"] += 1
            return
        if not isinstance(msg, dict):
            stats.errors["non_object_from_server"] += 1
            return
        typ = msg.get("type")
        role = peer.role
        if typ == "candidate":
            kind = msg.get("k")
            if kind == "hs":
                if role == 1:
                    peer.send(control("hsa"))
            elif kind == "hsa":
                if role == 0 and not self.ready.done():
                    self.ready.set_result(None)
            elif kind == "x":
                if role == 0:
                    self.a_x += 1
                else:
                    self.b_x += 1
                self._check_exchanged()
            else:
                stats.events["stray_candidate"] += 1
        elif typ == "offer" and role == 1:
            self.b_offer = True
            peer.send(json.dumps({"type": "answer", "sdp": FAKE_SDP}).encode())
            for i in range(EXCHANGE_CANDIDATES):
                peer.send(control("x", candidate=CANDIDATE.decode(), sdpMLineIndex=i))
            self._check_exchanged()
        elif typ == "answer" and role == 0:
            self.a_answer = True
            for i in range(EXCHANGE_CANDIDATES):
                peer.send(control("x", candidate=CANDIDATE.decode(), sdpMLineIndex=i))
            self._check_exchanged()
        elif typ == "error" or (typ is None and "error" in msg):
            if is_room_full(msg):
                self.room_full = True
                stats.errors["room_full"] += 1
            else:
                code = msg.get("code") or msg.get("message") or msg.get("error")
                stats.errors[f"server_error:{code}"] += 1
        elif typ == "info":
            stats.events[f"info:{msg.get('code')}"] += 1
        elif isinstance(typ, str):
            stats.events[typ] += 1
            if typ == "peer-joined":
                self.peer_joined_seen = True
        else:
            stats.events["untyped"] += 1

    def _check_exchanged(self) -> None:
        if (
            self.a_answer
            and self.b_offer
            and self.a_x >= EXCHANGE_CANDIDATES
            and self.b_x >= EXCHANGE_CANDIDATES
            and not self.exchanged.done()
        ):
            self.exchanged.set_result(None)

    # ------------------------------------------------------------------ set-up
    async def connect(self, base_url: str, timeout: float, base_url_b: str = "") -> None:
        """A joins at ``base_url``, then B at ``base_url_b`` (another worker) or the same."""
        url = room_url(base_url, self.room)
        self.ready = self.loop.create_future()
        self.exchanged = self.loop.create_future()
        self._reset_exchange()
        self.room_full = False
        self.a = await connect_peer(url, self, 0, timeout)
        url_b = room_url(base_url_b, self.room) if base_url_b else url
        self.b = await connect_peer(url_b, self, 1, timeout)

    async def handshake(self, timeout: float) -> bool:
        """Ping-pong until B answers A (both joined), then offer/answer/candidates."""
        assert self.a is not None and self.b is not None
        deadline = time.monotonic() + timeout
        wait = 0.1
        attempt = 0
        while not self.ready.done():
            left = deadline - time.monotonic()
            if left <= 0 or self.room_full or self.a.closed or self.b.closed:
                return False
            attempt += 1
            self.a.send(control("hs", n=attempt))
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.ready), min(wait, left))
            # Exponential backoff up to 5 s: on a server that is already slow, quick
            # retries from every pair would only add to its backlog.
            wait = min(wait * 2, 5.0)
        if attempt > 1:
            self.stats.events["handshake_retries"] += attempt - 1
        self.a.send(json.dumps({"type": "offer", "sdp": FAKE_SDP}).encode())
        try:
            await asyncio.wait_for(
                asyncio.shield(self.exchanged), max(0.01, deadline - time.monotonic())
            )
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in (self.a, self.b) if p is not None))

    # ------------------------------------------------------------------ measuring
    def send_next(self, t_ns: int) -> None:
        assert self.a is not None
        self.a.send(measure_message(self.sent, t_ns))
        self.sent += 1
        self.stats.sent += 1

    def start_closed(self, window: int, limit: int, deadline_ns: int) -> None:
        self.reset_measure()
        self.mode = CLOSED_LOOP
        self.limit = limit
        self.deadline_ns = deadline_ns
        for _ in range(min(window, limit)):
            self.send_next(monotonic_ns())

    def start_open(self, rate: float, start_ns: int, end_ns: int, rng: random.Random) -> None:
        self.reset_measure()
        self.mode = OPEN_LOOP
        self.interval_ns = int(1e9 / rate)
        self.next_ns = start_ns + int(rng.random() * self.interval_ns)
        self.end_ns = end_ns
        self._schedule()

    def _schedule(self) -> None:
        delay = (self.next_ns - monotonic_ns()) / 1e9
        self.timer = self.loop.call_later(max(0.0, delay), self._tick)

    def _tick(self) -> None:
        intended = self.next_ns
        if intended >= self.end_ns or self.a is None or self.a.closed:
            self.stopped = True
            self._maybe_finish()
            return
        # t = the intended send time: a late timer counts against latency
        # (no coordinated omission).
        self.send_next(intended)
        self.next_ns += self.interval_ns
        self._schedule()

    def _after_echo(self) -> None:
        if self.mode == CLOSED_LOOP:
            if self.sent < self.limit and monotonic_ns() < self.deadline_ns:
                self.send_next(monotonic_ns())
            elif self.echoed >= self.sent:
                self.finish()
        elif self.mode == OPEN_LOOP:
            self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.stopped and self.echoed >= self.sent:
            self.finish()

    def stop_sending(self) -> None:
        """Deadline reached (closed loop): no new sends; finish once drained."""
        self.limit = min(self.limit, self.sent)
        if self.timer is not None:
            self.timer.cancel()
        self.stopped = True
        if self.echoed >= self.sent:
            self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        self.on_done(self)

    def loss_counts(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "echoed": self.echoed,
            "lost_a_to_b": self.b_track.lost(self.sent),
            "lost_echo": self.a_track.lost(self.b_track.received),
            "reordered": self.a_track.reordered + self.b_track.reordered,
            "duplicates": self.a_track.duplicates + self.b_track.duplicates,
        }


# ---------------------------------------------------------------------- helpers
class PairSet:
    """All pairs of one worker process plus the bookkeeping around them."""

    def __init__(self, ctx: WorkerCtx) -> None:
        self.ctx = ctx
        self.stats = ProcStats()
        self.pairs: list[Pair] = []
        self.pending = 0
        self.all_done: asyncio.Future[None] | None = None
        for i in ctx.pairs:
            self.pairs.append(Pair(i, ctx.room(i), self.stats, self._pair_done))

    def _pair_done(self, pair: Pair) -> None:
        self.pending -= 1
        if self.pending <= 0 and self.all_done is not None and not self.all_done.done():
            self.all_done.set_result(None)

    async def establish(self, concurrency: int, timeout: float) -> list[Pair]:
        """Connect every pair and run the handshake; returns the pairs that are ready."""
        sem = asyncio.Semaphore(concurrency)
        ready: list[Pair] = []
        stats = self.stats

        async def one(pair: Pair) -> None:
            async with sem:
                try:
                    await pair.connect(self.ctx.url, timeout, self.ctx.params.get("url_b", ""))
                except Exception as exc:
                    stats.errors[error_kind(exc)] += 1
                    return
            if await pair.handshake(timeout):
                ready.append(pair)
            else:
                stats.errors["handshake_timeout" if not pair.room_full else "room_full_setup"] += 1

        await asyncio.gather(*(one(p) for p in self.pairs))
        return ready

    async def wait_done(self, pairs: list[Pair], drain_deadline: float) -> None:
        loop = asyncio.get_running_loop()
        self.all_done = loop.create_future()
        self.pending = sum(1 for p in pairs if not p.finished)
        if self.pending == 0:
            return
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self.all_done), max(0.01, drain_deadline - time.monotonic())
            )

    async def drain(self, pairs: list[Pair], deadline: float, idle_s: float = 1.0) -> None:
        """Wait until every pair has its echoes, ``deadline`` passes, or nothing at all has
        arrived for ``idle_s`` (what is still missing then is lost, not late)."""
        seen = self.stats.deliveries
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            await self.wait_done(pairs, min(deadline, time.monotonic() + 0.1))
            if self.pending <= 0:
                return
            now = time.monotonic()
            if self.stats.deliveries != seen:
                seen, quiet_since = self.stats.deliveries, now
            elif now - quiet_since >= idle_s:
                return

    async def close_all(self) -> None:
        sem = asyncio.Semaphore(500)

        async def one(pair: Pair) -> None:
            async with sem:
                await pair.close()

        await asyncio.gather(*(one(p) for p in self.pairs))


def loss_totals(pairs: list[Pair]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for pair in pairs:
        out.update(pair.loss_counts())
    return dict(out)


async def progress_pump(ctx: WorkerCtx, read: Callable[[], int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        ctx.progress(read())
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    ctx.progress(read())


# ---------------------------------------------------------------------- scenarios
async def relay_worker(ctx: WorkerCtx) -> None:
    """Barrier 0: all pairs ready; closed loop until barrier 1; then close."""
    p = ctx.params
    ps = PairSet(ctx)
    ready = await ps.establish(p["concurrency"], p["setup_timeout"])
    setup = {"ready_pairs": len(ready), "errors": dict(ps.stats.errors)}
    ps.stats.errors.clear()
    await ctx.barrier(0, setup)
    stats = ps.stats
    stop = asyncio.Event()
    pump = asyncio.ensure_future(progress_pump(ctx, lambda: stats.deliveries, stop))
    start_ns = monotonic_ns()
    deadline_ns = start_ns + int(p["duration"] * 1e9)
    ps.pending = len(ready)
    for pair in ready:
        pair.start_closed(p["window"], p["messages"], deadline_ns)
    # Stop sending at the deadline, then drain.
    await ps.wait_done(ready, time.monotonic() + p["duration"])
    for pair in ready:
        if not pair.finished:
            pair.stop_sending()
    await ps.drain(ready, time.monotonic() + p["drain_timeout"])
    unfinished = sum(1 for pair in ready if not pair.finished)
    # The window is the sending time plus the drain's last echo, not plus the time the
    # drain waited for messages that never came: that wait doubled the span (5 s asked,
    # 10 s divided by, half the progress line's rate). Pairs that all finished early (their
    # --messages sent) end it at their last echo.
    last = stats.last_echo_ns if stats.last_echo_ns > start_ns else start_ns + 1
    end_ns = last if unfinished == 0 else min(monotonic_ns(), max(deadline_ns, last))
    stop.set()
    await pump
    result = stats.as_dict()
    result.update(
        start_ns=start_ns,
        end_ns=end_ns,
        loss=loss_totals(ready),
        unfinished_pairs=unfinished,
        ready_pairs=len(ready),
    )
    ctx.result(0, result)
    await ctx.barrier(1)
    await ps.close_all()


async def openloop_worker(ctx: WorkerCtx) -> None:
    """Barrier k: start step k (one rate); the last barrier closes everything."""
    p = ctx.params
    ps = PairSet(ctx)
    ready = await ps.establish(p["concurrency"], p["setup_timeout"])
    setup = {"ready_pairs": len(ready), "errors": dict(ps.stats.errors)}
    rates: list[float] = p["rates"]
    rng = random.Random(ctx.index)
    for step, rate in enumerate(rates):
        ps.stats = stats = ProcStats()
        for pair in ps.pairs:
            pair.stats = stats
        await ctx.barrier(step, setup if step == 0 else None)
        if ctx.aborted:
            break
        stop = asyncio.Event()
        step_stats = stats
        pump = asyncio.ensure_future(
            progress_pump(ctx, lambda: step_stats.deliveries, stop)  # noqa: B023 - awaited in-loop
        )
        start_ns = monotonic_ns()
        end_ns = start_ns + int(p["duration"] * 1e9)
        ps.pending = len(ready)
        for pair in ready:
            pair.start_open(rate, start_ns, end_ns, rng)
        await ps.wait_done(ready, time.monotonic() + p["duration"] + p["drain_timeout"])
        for pair in ready:
            if not pair.finished:
                pair.stop_sending()
        done_ns = monotonic_ns()
        stop.set()
        await pump
        result = stats.as_dict()
        result.update(
            start_ns=start_ns,
            end_ns=min(end_ns, done_ns),
            loss=loss_totals(ready),
            unfinished_pairs=sum(1 for pair in ready if not pair.finished),
            ready_pairs=len(ready),
            rate=rate,
        )
        ctx.result(step, result)
    await ctx.barrier(len(rates))
    await ps.close_all()


async def churn_worker(ctx: WorkerCtx) -> None:
    """Each pair: join, handshake + exchange, leave, rejoin... until the duration ends."""
    p = ctx.params
    stats = ProcStats()
    counts: Counter[str] = Counter()
    await ctx.barrier(0)
    deadline = time.monotonic() + p["duration"]
    timeout = p["setup_timeout"]
    delay = p["rejoin_delay"]
    cycle_ns = array("q")

    async def run_pair(index: int) -> None:
        pair = Pair(index, ctx.room(index), stats, lambda _p: None)
        first = True
        while time.monotonic() < deadline:
            t0 = monotonic_ns()
            ok = False
            try:
                await pair.connect(ctx.url, timeout)
                ok = await pair.handshake(min(timeout, max(0.1, deadline - time.monotonic() + 5)))
            except Exception as exc:
                stats.errors[error_kind(exc)] += 1
            if pair.room_full:
                counts["room_full_first_join" if first else "room_full_on_rejoin"] += 1
            elif ok:
                counts["cycles"] += 1
                cycle_ns.append(monotonic_ns() - t0)
                if pair.a is not None:
                    pair.a.send(b'{"type":"leave"}')
            elif time.monotonic() < deadline:
                counts["handshake_timeout"] += 1
            first = False
            await pair.close()
            pair.a = pair.b = None
            if delay > 0:
                await asyncio.sleep(delay)
            elif pair.room_full:
                await asyncio.sleep(0.01)
            ctx.progress(counts["cycles"])

    start_ns = monotonic_ns()
    await asyncio.gather(*(run_pair(i) for i in ctx.pairs))
    end_ns = monotonic_ns()
    result = stats.as_dict()
    result.update(
        start_ns=start_ns,
        end_ns=end_ns,
        counts=dict(counts),
        cycle_ns=cycle_ns.tobytes(),
    )
    ctx.result(0, result)
    await ctx.barrier(1)


class _Sink:
    """Owner for peers that only need counting (connect storm, idle hold)."""

    def __init__(self, stats: ProcStats) -> None:
        self.stats = stats
        self.joined: dict[int, asyncio.Future[None]] = {}
        self.closed_unexpectedly = 0
        self.holding = False

    def on_message(self, peer: Peer, data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            self.stats.errors["bad_json_from_server"] += 1
            return
        typ = msg.get("type") if isinstance(msg, dict) else None
        if typ == "joined":
            fut = self.joined.get(id(peer))
            if fut is not None and not fut.done():
                fut.set_result(None)
        if isinstance(msg, dict) and (typ == "error" or "error" in msg):
            if is_room_full(msg):
                self.stats.errors["room_full"] += 1
            else:
                code = msg.get("code") or msg.get("message") or msg.get("error")
                self.stats.errors[f"server_error:{code}"] += 1
        self.stats.events[str(typ)] += 1

    def on_closed(self, peer: Peer) -> None:
        if self.holding:
            self.closed_unexpectedly += 1
            self.stats.errors[f"closed_during_hold:{peer.close_code}"] += 1


async def connect_many(
    ctx: WorkerCtx,
    sink: _Sink,
    concurrency: int,
    timeout: float,
    wait_joined: float,
    latencies: array[int],
    peers: list[Peer],
) -> None:
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    count = 0

    async def one(pair: int, role: int) -> None:
        nonlocal count
        url = room_url(ctx.url, ctx.room(pair))
        async with sem:
            t0 = monotonic_ns()
            try:
                peer = Peer(sink, role)
                fut: asyncio.Future[None] = loop.create_future()
                sink.joined[id(peer)] = fut
                peer_out = await _connect_with(peer, url, timeout)
            except Exception as exc:
                sink.stats.errors[error_kind(exc)] += 1
                return
            if wait_joined > 0:
                try:
                    await asyncio.wait_for(fut, wait_joined)
                except TimeoutError:
                    sink.stats.events["no_joined_event"] += 1
            sink.joined.pop(id(peer), None)
            latencies.append(monotonic_ns() - t0)
            peers.append(peer_out)
            count += 1
            if count % 64 == 0:
                ctx.progress(count)

    await asyncio.gather(*(one(pair, role) for pair in ctx.pairs for role in (0, 1)))
    ctx.progress(count)


async def _connect_with(peer: Peer, url: str, timeout: float) -> Peer:
    from picows import ws_connect

    await ws_connect(
        lambda: peer,
        url,
        ssl_context=tls_context() if url.startswith("wss:") else None,
        websocket_handshake_timeout=timeout,
        read_buffer_init_size=1024,
        max_redirects=0,
    )
    return peer


async def connect_worker(ctx: WorkerCtx) -> None:
    """Barrier 0: start together; connect all; barrier 1 when all joined; close."""
    p = ctx.params
    stats = ProcStats()
    sink = _Sink(stats)
    latencies: array[int] = array("q")
    peers: list[Peer] = []
    await ctx.barrier(0)
    start_ns = monotonic_ns()
    await connect_many(
        ctx, sink, p["concurrency"], p["setup_timeout"], p["wait_joined"], latencies, peers
    )
    end_ns = monotonic_ns()
    result = stats.as_dict()
    result.update(
        start_ns=start_ns, end_ns=end_ns, joined=len(peers), connect_ns=latencies.tobytes()
    )
    ctx.result(0, result)
    await ctx.barrier(1)
    await _close_peers(peers)


async def _close_peers(peers: list[Peer]) -> None:
    sem = asyncio.Semaphore(500)

    async def one(peer: Peer) -> None:
        async with sem:
            await peer.close(timeout=5)

    await asyncio.gather(*(one(peer) for peer in peers))


async def idle_worker(ctx: WorkerCtx) -> None:
    """Barrier 0 before connecting; 1 once all are held (server memory read there); 2 at the end."""
    p = ctx.params
    stats = ProcStats()
    sink = _Sink(stats)
    latencies: array[int] = array("q")
    peers: list[Peer] = []
    await ctx.barrier(0)
    start_ns = monotonic_ns()
    await connect_many(ctx, sink, p["concurrency"], p["setup_timeout"], 0.0, latencies, peers)
    connected_ns = monotonic_ns()
    sink.holding = True
    await asyncio.sleep(p["settle"])
    await ctx.barrier(1, {"held": len(peers)})
    # Hold: every peer pings once per interval, spread evenly over the interval.
    hold_end = time.monotonic() + p["hold"]
    interval = p["ping_interval"]
    pings = 0
    slices = max(1, int(interval / 0.05))
    tick = 0
    while time.monotonic() < hold_end:
        for peer in peers[tick % slices :: slices]:
            if peer.ping():
                pings += 1
        tick += 1
        await asyncio.sleep(interval / slices)
        ctx.progress(pings)
    await asyncio.sleep(min(2.0, interval))
    pongs = sum(peer.pongs for peer in peers)
    still_open = sum(1 for peer in peers if not peer.closed)
    sink.holding = False
    result = stats.as_dict()
    result.update(
        start_ns=start_ns,
        connected_ns=connected_ns,
        joined=len(peers),
        still_open=still_open,
        pings=pings,
        pongs=pongs,
        closed_during_hold=sink.closed_unexpectedly,
        connect_ns=latencies.tobytes(),
    )
    ctx.result(0, result)
    await ctx.barrier(2)
    await _close_peers(peers)


async def probe_ready(url: str, timeout: float) -> bool:
    """True once a fresh pair in a probe room can exchange a message (server fully up)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        pair = Pair(attempt, f"bench-probe-{time.monotonic_ns()}", ProcStats(), lambda _p: None)
        try:
            await pair.connect(url, max(0.5, deadline - time.monotonic()))
            if await pair.handshake(min(3.0, max(0.5, deadline - time.monotonic()))):
                return True
        except Exception:  # not up yet: refused, reset, 1013 ...
            await asyncio.sleep(0.2)
        finally:
            await pair.close()
    return False


# ---------------------------------------------------------------------- call set-up
CALL_CANDIDATES = 8
#: Why a call failed, in the order a cause is preferred when several apply.
CALL_FAILURES = ("room_full", "no_peer", "lost_message", "closed", "timeout")


#: ``--arrivals``: when the calls of an open loop start.
CALL_ARRIVALS = ("poisson", "even")


def call_arrivals(kind: str, calls: int, interval_ns: int, rng: random.Random) -> list[int]:
    """Start offsets (ns from the first) of ``calls`` calls, ``interval_ns`` apart on
    average: ``even`` exactly so, ``poisson`` with exponential gaps (independent callers,
    the bursts a real service sees; the processes' streams add up to one Poisson stream)."""
    if kind == "even":
        return [n * interval_ns for n in range(calls)]
    if kind != "poisson":
        raise ValueError(f"arrivals: {kind!r} (choose from {', '.join(CALL_ARRIVALS)})")
    out, at = [], 0.0
    for _ in range(calls):
        out.append(int(at))
        at += rng.expovariate(1.0 / interval_ns)
    return out


class CallPeer(Peer):
    """A peer that tells its owner the moment its socket is open (B sends right then)."""

    __slots__ = ()

    def on_ws_connected(self, transport: Any) -> None:
        super().on_ws_connected(transport)
        opened = getattr(self.owner, "on_open", None)
        if opened is not None:
            opened(self)


class Call:
    """One call: A opens a socket to a fresh room; once it is open B opens one and sends
    its offer and ``CALL_CANDIDATES`` candidates at once; A answers the offer. Set up
    when B has A's answer; complete when A also has every candidate."""

    def __init__(self, room: str) -> None:
        loop = asyncio.get_running_loop()
        self.room = room
        self.done: asyncio.Future[None] = loop.create_future()
        self.t0 = 0
        self.setup_ns = 0
        self.offer_at_a = False
        self.answer_sent = False
        self.answer_at_b = False
        self.candidates_at_a = 0
        self.no_peer = False
        self.room_full = False
        self.closed = False
        self.errors: Counter[str] = Counter()
        self.a: Peer | None = None
        self.b: Peer | None = None

    def on_open(self, peer: Peer) -> None:
        if peer.role == 1:
            peer.send(json.dumps({"type": "offer", "sdp": FAKE_SDP}).encode())
            for i in range(CALL_CANDIDATES):
                peer.send(
                    json.dumps(
                        {"type": "candidate", "candidate": CANDIDATE.decode(), "sdpMLineIndex": i}
                    ).encode()
                )

    def on_message(self, peer: Peer, data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            self.errors["bad_json_from_server"] += 1
            return
        if not isinstance(msg, dict):
            return
        typ = msg.get("type")
        if typ == "offer" and peer.role == 0:
            self.offer_at_a = True
            self.answer_sent = peer.send(json.dumps({"type": "answer", "sdp": FAKE_SDP}).encode())
        elif typ == "candidate" and peer.role == 0:
            self.candidates_at_a += 1
        elif typ == "answer" and peer.role == 1:
            if not self.answer_at_b:
                self.answer_at_b = True
                self.setup_ns = monotonic_ns() - self.t0
        elif typ == "info" and msg.get("code") == "no_peer":
            self.no_peer = True
        elif typ == "error" or (typ is None and "error" in msg):
            if is_room_full(msg):
                self.room_full = True
            else:
                code = msg.get("code") or msg.get("message") or msg.get("error")
                self.errors[f"server_error:{code}"] += 1
        self._check()

    def on_closed(self, peer: Peer) -> None:
        if not self.done.done():
            self.closed = True
            self._check()

    def _check(self) -> None:
        if self.done.done():
            return
        complete = self.answer_at_b and self.candidates_at_a >= CALL_CANDIDATES
        if complete or self.room_full or self.no_peer or self.closed:
            self.done.set_result(None)

    def failure(self) -> str | None:
        """None for a complete call, else the first kind of :data:`CALL_FAILURES` that fits
        (``lost_message``: a message sent over two open sockets never arrived, no notice)."""
        if self.answer_at_b and self.candidates_at_a >= CALL_CANDIDATES:
            return None
        if self.room_full:
            return "room_full"
        if self.no_peer:
            return "no_peer"
        if self.closed:
            return "closed"
        if self.a is not None and self.b is not None:
            return "lost_message"
        return "timeout"


async def calls_worker(ctx: WorkerCtx) -> None:
    """Open loop of calls: this process's share of ``rate`` calls/s for ``duration`` s."""
    p = ctx.params
    url_a = ctx.url
    url_b = p["url_b"] or ctx.url
    timeout = p["call_timeout"]
    interval_ns = int(1e9 * ctx.procs / p["rate"])
    calls = ctx.pairs  # one "pair" per call: this process's share of rate x duration
    offset_ns = interval_ns * ctx.index // ctx.procs  # the processes take turns
    arrivals = call_arrivals(p["arrivals"], len(calls), interval_ns, random.Random(ctx.index))
    setup_ns: array[int] = array("q")
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    done = 0
    last_setup_ns = 0

    async def one(n: int) -> None:
        nonlocal done, last_setup_ns
        call = Call(ctx.room(n))
        call.t0 = monotonic_ns()
        deadline = time.monotonic() + timeout
        try:
            try:
                call.a = await connect_peer(room_url(url_a, call.room), call, 0, timeout)
                left = max(0.01, deadline - time.monotonic())
                b = CallPeer(call, 1)
                await _connect_with(b, room_url(url_b, call.room), left)
                call.b = b
            except Exception as exc:
                counts[error_kind(exc)] += 1  # connect_refused, connect_timeout, http_503 ...
                return
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(call.done), max(0.01, deadline - time.monotonic())
                )
            failure = call.failure()
            errors.update(call.errors)
            if failure is None:
                counts["complete"] += 1
                setup_ns.append(call.setup_ns)
                last_setup_ns = max(last_setup_ns, call.t0 + call.setup_ns)
            else:
                counts[failure] += 1
        finally:
            done += 1
            ctx.progress(counts["complete"])
            await asyncio.gather(*(x.close(timeout=2) for x in (call.a, call.b) if x is not None))

    await ctx.barrier(0)
    start_ns = monotonic_ns() + offset_ns
    tasks: list[asyncio.Task[None]] = []
    for at_ns, call_index in zip(arrivals, calls, strict=True):
        delay = (start_ns + at_ns - monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(call_index)))
    offered_end_ns = monotonic_ns()
    await asyncio.gather(*tasks)
    end_ns = monotonic_ns()
    ctx.progress(counts["complete"])
    ctx.result(
        0,
        {
            "start_ns": start_ns,
            "offered_end_ns": offered_end_ns,
            "end_ns": end_ns,
            "last_setup_ns": last_setup_ns,
            "calls": len(calls),
            "counts": dict(counts),
            "errors": dict(errors),
            "setup_ns": setup_ns.tobytes(),
        },
    )
    await ctx.barrier(1)
