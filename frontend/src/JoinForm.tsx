import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { countCharacters, roomNameProblem } from "./roomName";

interface Props {
  initialRoom: string;
  error: string | null;
  /** Longest room name the server accepts, in characters (code points). */
  maxLength: number;
  onJoin: (room: string) => void;
}

/**
 * The room form. Characters are counted as the server counts them (code
 * points: an emoji is one), and a name that is too long is refused with a
 * message rather than cut.
 */
export function JoinForm({ initialRoom, error, maxLength, onJoin }: Props) {
  const [room, setRoom] = useState(initialRoom);
  const [problem, setProblem] = useState<string | null>(null);
  const inputRef = useRef<HTMLInputElement>(null);
  const id = useId();

  useEffect(() => {
    // Focus the room field on show (and after a room-full bounce), selected
    // so the user can type another name straight away.
    inputRef.current?.focus();
    inputRef.current?.select();
  }, [error]);

  const length = countCharacters(room.trim());
  const tooLong = length > maxLength;

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const why = roomNameProblem(room, maxLength);
    if (why !== null) {
      setProblem(why);
      inputRef.current?.focus();
      return;
    }
    setProblem(null);
    onJoin(room.trim());
  };

  // Shown at once while typing when too long; other problems after a Join attempt.
  const shown = tooLong ? roomNameProblem(room, maxLength) : problem;

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
            value={room}
            aria-invalid={shown !== null}
            aria-describedby={`${id}-hint ${id}-count`}
            onChange={(e) => {
              setRoom(e.target.value);
              setProblem(null);
            }}
          />
          <button type="submit">Join</button>
        </div>
        <p id={`${id}-hint`} className={shown ? "hint hint-error" : "hint"} data-testid="room-hint">
          {shown ?? "Two people in the same room can chat. Share the page link to invite someone."}
        </p>
        <p id={`${id}-count`} className={tooLong ? "count hint-error" : "count"} data-testid="room-count">
          {length} of {maxLength} characters
        </p>
      </form>
    </section>
  );
}
