/**
 * Emitter is a small typed event emitter that works the same in browsers and
 * Node. A listener that throws does not stop the others, and an `error`
 * event with no listener is dropped rather than thrown.
 */
export class Emitter {
    listeners = new Map();
    /** on adds a listener and returns a function that removes it. */
    on(event, fn) {
        let set = this.listeners.get(event);
        if (!set) {
            set = new Set();
            this.listeners.set(event, set);
        }
        set.add(fn);
        return () => this.off(event, fn);
    }
    /** off removes a listener added with on. */
    off(event, fn) {
        this.listeners.get(event)?.delete(fn);
    }
    emit(event, ...args) {
        const set = this.listeners.get(event);
        if (!set)
            return;
        for (const fn of [...set]) {
            try {
                fn(...args);
            }
            catch (err) {
                // A listener's bug must not break the connection's bookkeeping;
                // report it asynchronously, where it surfaces as an uncaught error.
                queueMicrotask(() => {
                    throw err;
                });
            }
        }
    }
}
