export declare class AsyncQueue<T> implements AsyncIterable<T> {
    private readonly items;
    private waiter;
    private closed;
    /** Adds an item; false (and nothing queued) once the queue is closed. */
    push(item: T): boolean;
    /** Ends the iteration after the items already queued. */
    close(): void;
    get isClosed(): boolean;
    [Symbol.asyncIterator](): AsyncIterator<T>;
}
//# sourceMappingURL=async-queue.d.ts.map