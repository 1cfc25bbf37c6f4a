// A page's own commands to the room, sent one after another in the order the person gave them.
//
// Every playback command carries the room version it was made against. Two sent at once (a
// speed picked while paused, then play straight away) would race: the server takes one, refuses
// the other as stale, and the page retries it — so the room could start at the old speed and
// switch a moment later. Sent in order, the second is made against the version the first
// produced. A command that does not answer holds the next one back at most `maxWaitMs`.

export class InOrder {
  private last: Promise<unknown> = Promise.resolve();

  constructor(private readonly maxWaitMs: number) {}

  /** Runs `task` once every task given before it has finished (or `maxWaitMs` has passed). */
  run<T>(task: () => Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.maxWaitMs);
    });
    const result = Promise.race([this.last, waited]).then(() => {
      clearTimeout(timer);
      return task();
    });
    this.last = result.catch(() => undefined);
    return result;
  }
}
