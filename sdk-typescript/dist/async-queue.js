// An unbounded async-iterable queue: the request side of a bidi stream that
// the worker pushes messages into from wherever they arise.
export class AsyncQueue {
    items = [];
    waiter;
    closed = false;
    /** Adds an item; false (and nothing queued) once the queue is closed. */
    push(item) {
        if (this.closed) {
            return false;
        }
        const waiter = this.waiter;
        if (waiter) {
            this.waiter = undefined;
            waiter({ value: item, done: false });
        }
        else {
            this.items.push(item);
        }
        return true;
    }
    /** Ends the iteration after the items already queued. */
    close() {
        this.closed = true;
        const waiter = this.waiter;
        this.waiter = undefined;
        waiter?.({ value: undefined, done: true });
    }
    get isClosed() {
        return this.closed;
    }
    [Symbol.asyncIterator]() {
        return {
            next: () => {
                if (this.items.length > 0) {
                    return Promise.resolve({ value: this.items.shift(), done: false });
                }
                if (this.closed) {
                    return Promise.resolve({ value: undefined, done: true });
                }
                return new Promise((resolve) => {
                    this.waiter = resolve;
                });
            },
            return: () => {
                this.close();
                return Promise.resolve({ value: undefined, done: true });
            },
            // Connect calls throw() on the request stream when the call fails;
            // there is nobody to rethrow to, so just stop.
            throw: () => {
                this.close();
                return Promise.resolve({ value: undefined, done: true });
            },
        };
    }
}
//# sourceMappingURL=async-queue.js.map