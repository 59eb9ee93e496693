import type { GenEnum, GenFile, GenMessage } from "@bufbuild/protobuf/codegenv2";
import type { Value as Value$1 } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/common.proto.
 */
export declare const file_taskloom_v1_common: GenFile;
/**
 * A typed value: what a run takes as input, what each task produces and what
 * a run returns. The kind is explicit so that a `parse_number` task yields a
 * number, a `model_execution` task yields a chat history, an `embedding` task
 * yields a vector, and so on, instead of every value being an opaque string.
 *
 * @generated from message taskloom.v1.Value
 */
export type Value = Message<"taskloom.v1.Value"> & {
    /**
     * The value itself; exactly one kind is set.
     *
     * @generated from oneof taskloom.v1.Value.kind
     */
    kind: {
        /**
         * Plain text (contenox input type `string`).
         *
         * @generated from field: string text = 1;
         */
        value: string;
        case: "text";
    } | {
        /**
         * A floating point number.
         *
         * @generated from field: double number = 2;
         */
        value: number;
        case: "number";
    } | {
        /**
         * A 64-bit signed integer.
         *
         * @generated from field: int64 integer = 3;
         */
        value: bigint;
        case: "integer";
    } | {
        /**
         * A boolean.
         *
         * @generated from field: bool boolean = 4;
         */
        value: boolean;
        case: "boolean";
    } | {
        /**
         * Any JSON document.
         *
         * @generated from field: google.protobuf.Value json = 5;
         */
        value: Value$1;
        case: "json";
    } | {
        /**
         * A conversation: what `model_execution` tasks consume and produce.
         *
         * @generated from field: taskloom.v1.ChatHistory chat_history = 6;
         */
        value: ChatHistory;
        case: "chatHistory";
    } | {
        /**
         * An embedding vector.
         *
         * @generated from field: taskloom.v1.Vector vector = 7;
         */
        value: Vector;
        case: "vector";
    } | {
        case: undefined;
        value?: undefined;
    };
};
/**
 * Describes the message taskloom.v1.Value.
 * Use `create(ValueSchema)` to create a new message.
 */
export declare const ValueSchema: GenMessage<Value>;
/**
 * One message in a conversation.
 *
 * @generated from message taskloom.v1.ChatMessage
 */
export type ChatMessage = Message<"taskloom.v1.ChatMessage"> & {
    /**
     * `system`, `user`, `assistant` or `tool`.
     *
     * @generated from field: string role = 1;
     */
    role: string;
    /**
     * The message text.
     *
     * @generated from field: string content = 2;
     */
    content: string;
};
/**
 * Describes the message taskloom.v1.ChatMessage.
 * Use `create(ChatMessageSchema)` to create a new message.
 */
export declare const ChatMessageSchema: GenMessage<ChatMessage>;
/**
 * A conversation, oldest message first.
 *
 * @generated from message taskloom.v1.ChatHistory
 */
export type ChatHistory = Message<"taskloom.v1.ChatHistory"> & {
    /**
     * The messages, oldest first.
     *
     * @generated from field: repeated taskloom.v1.ChatMessage messages = 1;
     */
    messages: ChatMessage[];
    /**
     * The model that produced the last assistant message, if any.
     *
     * @generated from field: string model = 2;
     */
    model: string;
    /**
     * Prompt tokens spent producing the last assistant message.
     *
     * @generated from field: int64 input_tokens = 3;
     */
    inputTokens: bigint;
    /**
     * Completion tokens of the last assistant message.
     *
     * @generated from field: int64 output_tokens = 4;
     */
    outputTokens: bigint;
};
/**
 * Describes the message taskloom.v1.ChatHistory.
 * Use `create(ChatHistorySchema)` to create a new message.
 */
export declare const ChatHistorySchema: GenMessage<ChatHistory>;
/**
 * An embedding vector.
 *
 * @generated from message taskloom.v1.Vector
 */
export type Vector = Message<"taskloom.v1.Vector"> & {
    /**
     * The components.
     *
     * @generated from field: repeated float values = 1;
     */
    values: number[];
};
/**
 * Describes the message taskloom.v1.Vector.
 * Use `create(VectorSchema)` to create a new message.
 */
export declare const VectorSchema: GenMessage<Vector>;
/**
 * Token usage of one model call or of a whole run.
 *
 * @generated from message taskloom.v1.TokenUsage
 */
export type TokenUsage = Message<"taskloom.v1.TokenUsage"> & {
    /**
     * Prompt tokens.
     *
     * @generated from field: int64 input_tokens = 1;
     */
    inputTokens: bigint;
    /**
     * Completion tokens.
     *
     * @generated from field: int64 output_tokens = 2;
     */
    outputTokens: bigint;
};
/**
 * Describes the message taskloom.v1.TokenUsage.
 * Use `create(TokenUsageSchema)` to create a new message.
 */
export declare const TokenUsageSchema: GenMessage<TokenUsage>;
/**
 * The kinds a `Value` can have; used to declare and report types.
 *
 * @generated from enum taskloom.v1.ValueType
 */
export declare enum ValueType {
    /**
     * Not specified: inferred from the JSON shape where allowed.
     *
     * @generated from enum value: VALUE_TYPE_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * `Value.text`.
     *
     * @generated from enum value: VALUE_TYPE_TEXT = 1;
     */
    TEXT = 1,
    /**
     * `Value.number`.
     *
     * @generated from enum value: VALUE_TYPE_NUMBER = 2;
     */
    NUMBER = 2,
    /**
     * `Value.integer`.
     *
     * @generated from enum value: VALUE_TYPE_INTEGER = 3;
     */
    INTEGER = 3,
    /**
     * `Value.boolean`.
     *
     * @generated from enum value: VALUE_TYPE_BOOLEAN = 4;
     */
    BOOLEAN = 4,
    /**
     * `Value.json`.
     *
     * @generated from enum value: VALUE_TYPE_JSON = 5;
     */
    JSON = 5,
    /**
     * `Value.chat_history`.
     *
     * @generated from enum value: VALUE_TYPE_CHAT_HISTORY = 6;
     */
    CHAT_HISTORY = 6,
    /**
     * `Value.vector`.
     *
     * @generated from enum value: VALUE_TYPE_VECTOR = 7;
     */
    VECTOR = 7
}
/**
 * Describes the enum taskloom.v1.ValueType.
 */
export declare const ValueTypeSchema: GenEnum<ValueType>;
//# sourceMappingURL=common_pb.d.ts.map