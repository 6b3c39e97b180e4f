/**
 * Emitter is a small typed event emitter that works the same in browsers and
 * Node. A listener that throws does not stop the others, and an `error`
 * event with no listener is dropped rather than thrown.
 */
export class Emitter<Events extends { [K in keyof Events]: (...args: never[]) => void }> {
  private readonly listeners = new Map<keyof Events, Set<Events[keyof Events]>>();

  /** on adds a listener and returns a function that removes it. */
  on<K extends keyof Events>(event: K, fn: Events[K]): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** off removes a listener added with on. */
  off<K extends keyof Events>(event: K, fn: Events[K]): void {
    this.listeners.get(event)?.delete(fn);
  }

  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as (...a: Parameters<Events[K]>) => void)(...args);
      } catch (err) {
        // A listener's bug must not break the connection's bookkeeping;
        // report it asynchronously, where it surfaces as an uncaught error.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
