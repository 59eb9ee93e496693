import type { JsonValue } from "@bufbuild/protobuf";
import type { ChatHistory, Value, Vector } from "./gen/taskloom/v1/common_pb.js";
/** What `toValue` accepts. */
export type ValueInput = string | number | bigint | boolean | null | Value | ChatHistory | Vector | ValueInput[] | {
    [key: string]: ValueInput | undefined;
};
/** What `fromValue` returns. */
export type PlainValue = string | number | bigint | boolean | JsonValue | ChatHistory | Vector;
/**
 * Converts a JavaScript value into a typed Value: a string is text, a
 * boolean is boolean, a bigint or a safe integer `number` is integer, any
 * other number is number, objects, arrays and null are json; a
 * ChatHistory or Vector message (or a Value) is used as it is.
 */
export declare function toValue(input: ValueInput): Value;
/**
 * Converts a typed Value back into JavaScript: text → string, boolean →
 * boolean, integer → number when it is a safe integer (bigint otherwise),
 * number → number, json → its JSON value, chat history and vector → the
 * messages themselves. An unset Value is `null`.
 */
export declare function fromValue(value: Value | undefined): PlainValue;
/** Plain data to JSON, refusing what JSON cannot hold instead of mangling it. */
export declare function toJsonValue(input: unknown): JsonValue;
//# sourceMappingURL=values.d.ts.map