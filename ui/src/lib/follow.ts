/**
 * The rule shared by views that follow a stream (the Live feed, a container's logs): they hold still while the
 * reader looks away from the newest entry. Scrolling away pauses; scrolling back to the newest entry, or asking
 * to resume, lets what arrived meanwhile in. An explicit pause holds too.
 */

export type FollowAction =
  /** The user scrolled: `atNewest` is true when the newest entry is in view. */
  | { type: "scroll"; atNewest: boolean }
  | { type: "pause" }
  | { type: "resume" };

/** What `action` does to a view that is (or is not) `paused`: pause it, resume it, or nothing (null). */
export function followStep(paused: boolean, action: FollowAction): "pause" | "resume" | null {
  switch (action.type) {
    case "scroll":
      if (action.atNewest) return paused ? "resume" : null;
      return paused ? null : "pause";
    case "pause":
      return paused ? null : "pause";
    case "resume":
      return "resume";
  }
}

/** Is a scrolled box at its end (within `slack` pixels), i.e. is the newest entry of a bottom-growing view in view? */
export function isAtBottom(box: { scrollTop: number; scrollHeight: number; clientHeight: number }, slack = 8): boolean {
  return box.scrollHeight - box.scrollTop - box.clientHeight <= slack;
}
