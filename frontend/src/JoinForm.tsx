import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { normaliseRoom } from "./signaling";

interface Props {
  initialRoom: string;
  error: string | null;
  onJoin: (room: string) => void;
}

export function JoinForm({ initialRoom, error, onJoin }: Props) {
  const [room, setRoom] = useState(initialRoom);
  const [invalid, setInvalid] = useState(false);
  const inputRef = useRef<HTMLInputElement>(null);
  const id = useId();

  useEffect(() => {
    // Focus the room field on show (and after a room-full bounce), selected
    // so the user can type another name straight away.
    inputRef.current?.focus();
    inputRef.current?.select();
  }, [error]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const value = normaliseRoom(room);
    if (!value) {
      setInvalid(true);
      inputRef.current?.focus();
      return;
    }
    setInvalid(false);
    onJoin(value);
  };

  return (
    <section className="card join" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Join a room</h2>
      {error && (
        <p className="alert" role="alert" data-testid="join-error">
          {error}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <label htmlFor={`${id}-room`}>Room name</label>
        <div className="row">
          <input
            id={`${id}-room`}
            ref={inputRef}
            name="room"
            type="text"
            autoComplete="off"
            maxLength={64}
            value={room}
            aria-invalid={invalid}
            aria-describedby={`${id}-hint`}
            onChange={(e) => setRoom(e.target.value)}
          />
          <button type="submit">Join</button>
        </div>
        <p id={`${id}-hint`} className={invalid ? "hint hint-error" : "hint"}>
          {invalid
            ? "Enter a room name: 1–64 letters, digits, punctuation or spaces."
            : "Two people in the same room can chat. Share the page link to invite someone."}
        </p>
      </form>
    </section>
  );
}
