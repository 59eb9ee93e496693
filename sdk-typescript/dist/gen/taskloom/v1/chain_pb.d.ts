import type { GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { EmptySchema, Timestamp, Value } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/chain.proto.
 */
export declare const file_taskloom_v1_chain: GenFile;
/**
 * A chain: a small state machine of tasks. Field names follow contenox's
 * chain format, so contenox JSON chains (camelCase or snake_case) are accepted
 * as they are.
 *
 * @generated from message taskloom.v1.Chain
 */
export type Chain = Message<"taskloom.v1.Chain"> & {
    /**
     * Unique id, `[A-Za-z0-9_.-]{1,128}`.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Free text.
     *
     * @generated from field: string description = 2;
     */
    description: string;
    /**
     * The tasks. The first one is the entry unless `entry` is set.
     *
     * @generated from field: repeated taskloom.v1.Task tasks = 3;
     */
    tasks: Task[];
    /**
     * The id of the first task to run (default: the first task).
     *
     * @generated from field: string entry = 4;
     */
    entry: string;
    /**
     * Upper bound on task executions in one run; a looping chain stops with an
     * error when it is reached. 0 means the server default (1000).
     *
     * @generated from field: int32 max_steps = 5;
     */
    maxSteps: number;
    /**
     * Upper bound on model tokens spent by one run; 0 means no limit.
     *
     * @generated from field: int64 token_limit = 6;
     */
    tokenLimit: bigint;
    /**
     * contenox compatibility; ignored.
     *
     * @generated from field: bool debug = 7;
     */
    debug: boolean;
    /**
     * How long the chain's finished runs are kept, as a duration such as
     * `72h` or `30d`; empty means the server's `--run-retention`, `0s` keeps
     * them forever.
     *
     * @generated from field: string run_retention = 8;
     */
    runRetention: string;
    /**
     * Output only. The version number, starting at 1.
     *
     * @generated from field: int64 version = 20;
     */
    version: bigint;
    /**
     * Output only. Opaque token for optimistic concurrency (AIP-154).
     *
     * @generated from field: string etag = 21;
     */
    etag: string;
    /**
     * Output only. When the chain was first created.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 22;
     */
    createTime?: Timestamp | undefined;
    /**
     * Output only. When this version was created.
     *
     * @generated from field: google.protobuf.Timestamp update_time = 23;
     */
    updateTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.Chain.
 * Use `create(ChainSchema)` to create a new message.
 */
export declare const ChainSchema: GenMessage<Chain>;
/**
 * One task of a chain.
 *
 * @generated from message taskloom.v1.Task
 */
export type Task = Message<"taskloom.v1.Task"> & {
    /**
     * Unique within the chain; not empty and not `end`.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Free text.
     *
     * @generated from field: string description = 2;
     */
    description: string;
    /**
     * What runs the task: `raw_string`, `condition_key`, `parse_number`,
     * `parse_score`, `parse_range`, `embedding`, `model_execution`, `hook`,
     * `worker`, `human_input`, `noop` or `raise_error`.
     *
     * @generated from field: string handler = 3;
     */
    handler: string;
    /**
     * System prompt for model-backed handlers.
     *
     * @generated from field: string system_instruction = 4;
     */
    systemInstruction: string;
    /**
     * minijinja template rendered into the task's input; it sees `input`,
     * `previous_output` and `tasks.<id>.output`.
     *
     * @generated from field: string prompt_template = 5;
     */
    promptTemplate: string;
    /**
     * Take the output of this task (or `input`) instead of the previous output.
     *
     * @generated from field: string input_var = 6;
     */
    inputVar: string;
    /**
     * For `condition_key`: the keys the model may answer with.
     *
     * @generated from field: map<string, bool> valid_conditions = 7;
     */
    validConditions: {
        [key: string]: boolean;
    };
    /**
     * Model selection and sampling for model-backed handlers.
     *
     * @generated from field: taskloom.v1.ExecuteConfig execute_config = 8;
     */
    executeConfig?: ExecuteConfig | undefined;
    /**
     * For `hook`: which registered hook to call.
     *
     * @generated from field: taskloom.v1.HookCall hook = 9;
     */
    hook?: HookCall | undefined;
    /**
     * For `worker`: the queue remote workers serve (required). For `hook`:
     * optional; routes the call to the workers of this queue (their offer
     * carries the rendered hook arguments) instead of the server calling the
     * hook's URL.
     *
     * @generated from field: string queue = 10;
     */
    queue: string;
    /**
     * Deadline of one attempt, as a duration such as `30s`, `1m30s`, `500ms`.
     *
     * @generated from field: string timeout = 11;
     */
    timeout: string;
    /**
     * Retry policy for failed attempts.
     *
     * @generated from field: taskloom.v1.RetryPolicy retry = 12;
     */
    retry?: RetryPolicy | undefined;
    /**
     * contenox compatibility: number of retries with a fixed 1s delay.
     *
     * @generated from field: int32 retry_on_failure = 13;
     */
    retryOnFailure: number;
    /**
     * Where to go next.
     *
     * @generated from field: taskloom.v1.Transition transition = 14;
     */
    transition?: Transition | undefined;
    /**
     * Join: run only after all of these tasks finished in this run.
     *
     * @generated from field: repeated string wait_for = 15;
     */
    waitFor: string[];
    /**
     * contenox compatibility: a template printed to the run's events.
     *
     * @generated from field: string print = 16;
     */
    print: string;
    /**
     * For `raise_error`: the error message (a template).
     *
     * @generated from field: string error_message = 17;
     */
    errorMessage: string;
};
/**
 * Describes the message taskloom.v1.Task.
 * Use `create(TaskSchema)` to create a new message.
 */
export declare const TaskSchema: GenMessage<Task>;
/**
 * Model selection and sampling.
 *
 * @generated from message taskloom.v1.ExecuteConfig
 */
export type ExecuteConfig = Message<"taskloom.v1.ExecuteConfig"> & {
    /**
     * Preferred model (shorthand for a one-element `models`).
     *
     * @generated from field: string model = 1;
     */
    model: string;
    /**
     * Models in order of preference.
     *
     * @generated from field: repeated string models = 2;
     */
    models: string[];
    /**
     * Preferred provider type (shorthand for a one-element `providers`).
     *
     * @generated from field: string provider = 3;
     */
    provider: string;
    /**
     * Provider types in order of preference (`ollama`, `openai`, ...).
     *
     * @generated from field: repeated string providers = 4;
     */
    providers: string[];
    /**
     * The pool whose backends may serve the task (default by capability:
     * `internal_chat_pool`, `internal_embed_pool` or `internal_tasks_pool`).
     *
     * @generated from field: string pool = 5;
     */
    pool: string;
    /**
     * Sampling temperature.
     *
     * @generated from field: optional float temperature = 6;
     */
    temperature?: number | undefined;
    /**
     * Completion token cap.
     *
     * @generated from field: int32 max_tokens = 7;
     */
    maxTokens: number;
    /**
     * Stream the model's answer even when no watcher asks for token deltas
     * (calls stream by themselves only while a watcher of the run asks for
     * them).
     *
     * @generated from field: bool stream = 8;
     */
    stream: boolean;
};
/**
 * Describes the message taskloom.v1.ExecuteConfig.
 * Use `create(ExecuteConfigSchema)` to create a new message.
 */
export declare const ExecuteConfigSchema: GenMessage<ExecuteConfig>;
/**
 * A reference to a registered hook.
 *
 * @generated from message taskloom.v1.HookCall
 */
export type HookCall = Message<"taskloom.v1.HookCall"> & {
    /**
     * The hook's name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Arguments passed to the hook; values are templates.
     *
     * @generated from field: map<string, string> args = 2;
     */
    args: {
        [key: string]: string;
    };
};
/**
 * Describes the message taskloom.v1.HookCall.
 * Use `create(HookCallSchema)` to create a new message.
 */
export declare const HookCallSchema: GenMessage<HookCall>;
/**
 * How failed attempts are retried.
 *
 * @generated from message taskloom.v1.RetryPolicy
 */
export type RetryPolicy = Message<"taskloom.v1.RetryPolicy"> & {
    /**
     * Total attempts including the first; 1 means no retry.
     *
     * @generated from field: int32 max_attempts = 1;
     */
    maxAttempts: number;
    /**
     * `fixed` (default) or `exponential`.
     *
     * @generated from field: string backoff = 2;
     */
    backoff: string;
    /**
     * Delay before the first retry, e.g. `1s`.
     *
     * @generated from field: string initial_delay = 3;
     */
    initialDelay: string;
    /**
     * Cap on the delay, e.g. `1m`.
     *
     * @generated from field: string max_delay = 4;
     */
    maxDelay: string;
    /**
     * Growth factor for `exponential` (default 2).
     *
     * @generated from field: double multiplier = 5;
     */
    multiplier: number;
    /**
     * Random extra delay as a fraction of the delay, 0..1.
     *
     * @generated from field: double jitter = 6;
     */
    jitter: number;
};
/**
 * Describes the message taskloom.v1.RetryPolicy.
 * Use `create(RetryPolicySchema)` to create a new message.
 */
export declare const RetryPolicySchema: GenMessage<RetryPolicy>;
/**
 * What happens after a task.
 *
 * @generated from message taskloom.v1.Transition
 */
export type Transition = Message<"taskloom.v1.Transition"> & {
    /**
     * Task to run when this task fails for good (instead of failing the run).
     *
     * @generated from field: string on_failure = 1;
     */
    onFailure: string;
    /**
     * Branches, evaluated in order; `default` is tried last wherever it stands.
     *
     * @generated from field: repeated taskloom.v1.Branch branches = 2;
     */
    branches: Branch[];
};
/**
 * Describes the message taskloom.v1.Transition.
 * Use `create(TransitionSchema)` to create a new message.
 */
export declare const TransitionSchema: GenMessage<Transition>;
/**
 * One branch of a transition.
 *
 * @generated from message taskloom.v1.Branch
 */
export type Branch = Message<"taskloom.v1.Branch"> & {
    /**
     * `equals`, `contains`, `starts_with`, `ends_with`, `gt` (`>`), `lt`
     * (`<`), `in_range` or `default`.
     *
     * @generated from field: string operator = 1;
     */
    operator: string;
    /**
     * The operand compared with the task's output.
     *
     * @generated from field: string when = 2;
     */
    when: string;
    /**
     * A task id, `end`, or a list of task ids to fan out to.
     *
     * @generated from field: google.protobuf.Value goto = 3;
     */
    goto?: Value | undefined;
    /**
     * contenox compatibility: an event message emitted when the branch is taken.
     *
     * @generated from field: string alert_on_match = 4;
     */
    alertOnMatch: string;
};
/**
 * Describes the message taskloom.v1.Branch.
 * Use `create(BranchSchema)` to create a new message.
 */
export declare const BranchSchema: GenMessage<Branch>;
/**
 * Request for ChainService.CreateChain.
 *
 * @generated from message taskloom.v1.CreateChainRequest
 */
export type CreateChainRequest = Message<"taskloom.v1.CreateChainRequest"> & {
    /**
     * The chain to create.
     *
     * @generated from field: taskloom.v1.Chain chain = 1;
     */
    chain?: Chain | undefined;
    /**
     * Idempotency key (AIP-155): a retry with the same id and payload returns
     * the original response.
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.CreateChainRequest.
 * Use `create(CreateChainRequestSchema)` to create a new message.
 */
export declare const CreateChainRequestSchema: GenMessage<CreateChainRequest>;
/**
 * Request for ChainService.GetChain.
 *
 * @generated from message taskloom.v1.GetChainRequest
 */
export type GetChainRequest = Message<"taskloom.v1.GetChainRequest"> & {
    /**
     * The chain id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * A version; 0 means the latest.
     *
     * @generated from field: int64 version = 2;
     */
    version: bigint;
};
/**
 * Describes the message taskloom.v1.GetChainRequest.
 * Use `create(GetChainRequestSchema)` to create a new message.
 */
export declare const GetChainRequestSchema: GenMessage<GetChainRequest>;
/**
 * Request for ChainService.ListChains.
 *
 * @generated from message taskloom.v1.ListChainsRequest
 */
export type ListChainsRequest = Message<"taskloom.v1.ListChainsRequest"> & {
    /**
     * Maximum results (default 50, at most 1000).
     *
     * @generated from field: int32 page_size = 1;
     */
    pageSize: number;
    /**
     * Token from a previous response.
     *
     * @generated from field: string page_token = 2;
     */
    pageToken: string;
};
/**
 * Describes the message taskloom.v1.ListChainsRequest.
 * Use `create(ListChainsRequestSchema)` to create a new message.
 */
export declare const ListChainsRequestSchema: GenMessage<ListChainsRequest>;
/**
 * Response of ChainService.ListChains.
 *
 * @generated from message taskloom.v1.ListChainsResponse
 */
export type ListChainsResponse = Message<"taskloom.v1.ListChainsResponse"> & {
    /**
     * Latest version of each chain.
     *
     * @generated from field: repeated taskloom.v1.Chain chains = 1;
     */
    chains: Chain[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListChainsResponse.
 * Use `create(ListChainsResponseSchema)` to create a new message.
 */
export declare const ListChainsResponseSchema: GenMessage<ListChainsResponse>;
/**
 * Request for ChainService.ListChainVersions.
 *
 * @generated from message taskloom.v1.ListChainVersionsRequest
 */
export type ListChainVersionsRequest = Message<"taskloom.v1.ListChainVersionsRequest"> & {
    /**
     * The chain id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Maximum results (default 50, at most 1000).
     *
     * @generated from field: int32 page_size = 2;
     */
    pageSize: number;
    /**
     * Token from a previous response.
     *
     * @generated from field: string page_token = 3;
     */
    pageToken: string;
};
/**
 * Describes the message taskloom.v1.ListChainVersionsRequest.
 * Use `create(ListChainVersionsRequestSchema)` to create a new message.
 */
export declare const ListChainVersionsRequestSchema: GenMessage<ListChainVersionsRequest>;
/**
 * Response of ChainService.ListChainVersions.
 *
 * @generated from message taskloom.v1.ListChainVersionsResponse
 */
export type ListChainVersionsResponse = Message<"taskloom.v1.ListChainVersionsResponse"> & {
    /**
     * The versions, newest first.
     *
     * @generated from field: repeated taskloom.v1.Chain chains = 1;
     */
    chains: Chain[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListChainVersionsResponse.
 * Use `create(ListChainVersionsResponseSchema)` to create a new message.
 */
export declare const ListChainVersionsResponseSchema: GenMessage<ListChainVersionsResponse>;
/**
 * Request for ChainService.UpdateChain.
 *
 * @generated from message taskloom.v1.UpdateChainRequest
 */
export type UpdateChainRequest = Message<"taskloom.v1.UpdateChainRequest"> & {
    /**
     * The new definition; `chain.id` names the chain to update.
     *
     * @generated from field: taskloom.v1.Chain chain = 1;
     */
    chain?: Chain | undefined;
    /**
     * If set, the update only happens if the chain's etag still matches.
     *
     * @generated from field: string etag = 2;
     */
    etag: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 3;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.UpdateChainRequest.
 * Use `create(UpdateChainRequestSchema)` to create a new message.
 */
export declare const UpdateChainRequestSchema: GenMessage<UpdateChainRequest>;
/**
 * Request for ChainService.DeleteChain.
 *
 * @generated from message taskloom.v1.DeleteChainRequest
 */
export type DeleteChainRequest = Message<"taskloom.v1.DeleteChainRequest"> & {
    /**
     * The chain id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * If set, the delete only happens if the chain's etag still matches.
     *
     * @generated from field: string etag = 2;
     */
    etag: string;
};
/**
 * Describes the message taskloom.v1.DeleteChainRequest.
 * Use `create(DeleteChainRequestSchema)` to create a new message.
 */
export declare const DeleteChainRequestSchema: GenMessage<DeleteChainRequest>;
/**
 * Request for ChainService.ValidateChain.
 *
 * @generated from message taskloom.v1.ValidateChainRequest
 */
export type ValidateChainRequest = Message<"taskloom.v1.ValidateChainRequest"> & {
    /**
     * The definition to check.
     *
     * @generated from field: taskloom.v1.Chain chain = 1;
     */
    chain?: Chain | undefined;
};
/**
 * Describes the message taskloom.v1.ValidateChainRequest.
 * Use `create(ValidateChainRequestSchema)` to create a new message.
 */
export declare const ValidateChainRequestSchema: GenMessage<ValidateChainRequest>;
/**
 * Response of ChainService.ValidateChain.
 *
 * @generated from message taskloom.v1.ValidateChainResponse
 */
export type ValidateChainResponse = Message<"taskloom.v1.ValidateChainResponse"> & {
    /**
     * True when there are no violations.
     *
     * @generated from field: bool valid = 1;
     */
    valid: boolean;
    /**
     * Every problem found, each with the path of the field at fault.
     *
     * @generated from field: repeated taskloom.v1.FieldViolation violations = 2;
     */
    violations: FieldViolation[];
};
/**
 * Describes the message taskloom.v1.ValidateChainResponse.
 * Use `create(ValidateChainResponseSchema)` to create a new message.
 */
export declare const ValidateChainResponseSchema: GenMessage<ValidateChainResponse>;
/**
 * A problem with one field of a request.
 *
 * @generated from message taskloom.v1.FieldViolation
 */
export type FieldViolation = Message<"taskloom.v1.FieldViolation"> & {
    /**
     * Path to the field, e.g. `chain.tasks[2].transition.branches[0].goto`.
     *
     * @generated from field: string field = 1;
     */
    field: string;
    /**
     * What is wrong.
     *
     * @generated from field: string description = 2;
     */
    description: string;
    /**
     * Machine-readable reason, e.g. `UNKNOWN_HANDLER`.
     *
     * @generated from field: string reason = 3;
     */
    reason: string;
};
/**
 * Describes the message taskloom.v1.FieldViolation.
 * Use `create(FieldViolationSchema)` to create a new message.
 */
export declare const FieldViolationSchema: GenMessage<FieldViolation>;
/**
 * ChainService stores chain definitions. Every update creates a new immutable
 * version; runs pin the version they started on.
 *
 * @generated from service taskloom.v1.ChainService
 */
export declare const ChainService: GenService<{
    /**
     * Creates a chain at version 1. `ALREADY_EXISTS` if the id is taken.
     *
     * @generated from rpc taskloom.v1.ChainService.CreateChain
     */
    createChain: {
        methodKind: "unary";
        input: typeof CreateChainRequestSchema;
        output: typeof ChainSchema;
    };
    /**
     * Returns the latest version of a chain, or the version asked for.
     *
     * @generated from rpc taskloom.v1.ChainService.GetChain
     */
    getChain: {
        methodKind: "unary";
        input: typeof GetChainRequestSchema;
        output: typeof ChainSchema;
    };
    /**
     * Lists the latest version of every chain, ordered by id.
     *
     * @generated from rpc taskloom.v1.ChainService.ListChains
     */
    listChains: {
        methodKind: "unary";
        input: typeof ListChainsRequestSchema;
        output: typeof ListChainsResponseSchema;
    };
    /**
     * Lists every version of one chain, newest first.
     *
     * @generated from rpc taskloom.v1.ChainService.ListChainVersions
     */
    listChainVersions: {
        methodKind: "unary";
        input: typeof ListChainVersionsRequestSchema;
        output: typeof ListChainVersionsResponseSchema;
    };
    /**
     * Replaces a chain's definition, creating the next version.
     *
     * @generated from rpc taskloom.v1.ChainService.UpdateChain
     */
    updateChain: {
        methodKind: "unary";
        input: typeof UpdateChainRequestSchema;
        output: typeof ChainSchema;
    };
    /**
     * Deletes a chain. Versions pinned by runs stay readable by those runs.
     *
     * @generated from rpc taskloom.v1.ChainService.DeleteChain
     */
    deleteChain: {
        methodKind: "unary";
        input: typeof DeleteChainRequestSchema;
        output: typeof EmptySchema;
    };
    /**
     * Checks a definition without storing it and returns every problem at once.
     *
     * @generated from rpc taskloom.v1.ChainService.ValidateChain
     */
    validateChain: {
        methodKind: "unary";
        input: typeof ValidateChainRequestSchema;
        output: typeof ValidateChainResponseSchema;
    };
}>;
//# sourceMappingURL=chain_pb.d.ts.map