// Conversion between plain JavaScript values and `taskloom.v1.Value`, the
// typed value runs take as input and tasks produce.
import { create, fromJson, isMessage, toJson } from "@bufbuild/protobuf";
import { ValueSchema as JsonValueSchema } from "@bufbuild/protobuf/wkt";
import { ChatHistorySchema, ValueSchema, VectorSchema, } from "./gen/taskloom/v1/common_pb.js";
/**
 * Converts a JavaScript value into a typed Value: a string is text, a
 * boolean is boolean, a bigint or a safe integer `number` is integer, any
 * other number is number, objects, arrays and null are json; a
 * ChatHistory or Vector message (or a Value) is used as it is.
 */
export function toValue(input) {
    if (isMessage(input, ValueSchema)) {
        return input;
    }
    if (isMessage(input, ChatHistorySchema)) {
        return create(ValueSchema, { kind: { case: "chatHistory", value: input } });
    }
    if (isMessage(input, VectorSchema)) {
        return create(ValueSchema, { kind: { case: "vector", value: input } });
    }
    switch (typeof input) {
        case "string":
            return create(ValueSchema, { kind: { case: "text", value: input } });
        case "boolean":
            return create(ValueSchema, { kind: { case: "boolean", value: input } });
        case "bigint":
            return create(ValueSchema, { kind: { case: "integer", value: input } });
        case "number":
            if (Number.isSafeInteger(input)) {
                return create(ValueSchema, { kind: { case: "integer", value: BigInt(input) } });
            }
            if (!Number.isFinite(input)) {
                throw new TypeError(`toValue: ${input} cannot be sent (not a finite number)`);
            }
            return create(ValueSchema, { kind: { case: "number", value: input } });
        case "object":
            return create(ValueSchema, {
                kind: { case: "json", value: fromJson(JsonValueSchema, toJsonValue(input)) },
            });
        default:
            throw new TypeError(`toValue: a ${typeof input} cannot be converted to a Value`);
    }
}
/**
 * Converts a typed Value back into JavaScript: text → string, boolean →
 * boolean, integer → number when it is a safe integer (bigint otherwise),
 * number → number, json → its JSON value, chat history and vector → the
 * messages themselves. An unset Value is `null`.
 */
export function fromValue(value) {
    const kind = value?.kind;
    switch (kind?.case) {
        case "text":
        case "boolean":
        case "number":
        case "chatHistory":
        case "vector":
            return kind.value;
        case "integer": {
            const asNumber = Number(kind.value);
            return Number.isSafeInteger(asNumber) ? asNumber : kind.value;
        }
        case "json":
            return toJson(JsonValueSchema, kind.value);
        default:
            return null;
    }
}
/** Plain data to JSON, refusing what JSON cannot hold instead of mangling it. */
export function toJsonValue(input) {
    if (input === null) {
        return null;
    }
    switch (typeof input) {
        case "string":
        case "boolean":
            return input;
        case "number":
            if (!Number.isFinite(input)) {
                throw new TypeError(`toValue: ${input} is not valid JSON`);
            }
            return input;
        case "bigint":
            if (!Number.isSafeInteger(Number(input))) {
                throw new TypeError(`toValue: ${input} is too large for a JSON number`);
            }
            return Number(input);
        case "object":
            if (Array.isArray(input)) {
                return input.map(toJsonValue);
            }
            return Object.fromEntries(Object.entries(input)
                .filter(([, entry]) => entry !== undefined)
                .map(([key, entry]) => [key, toJsonValue(entry)]));
        default:
            throw new TypeError(`toValue: a ${typeof input} is not valid JSON`);
    }
}
//# sourceMappingURL=values.js.map