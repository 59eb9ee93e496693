import type { GenEnum, GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Duration, EmptySchema, Timestamp } from "@bufbuild/protobuf/wkt";
import type { TokenUsage, Vector } from "./common_pb.js";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/backend.proto.
 */
export declare const file_taskloom_v1_backend: GenFile;
/**
 * An LLM backend: one provider endpoint.
 *
 * @generated from message taskloom.v1.Backend
 */
export type Backend = Message<"taskloom.v1.Backend"> & {
    /**
     * Output only. Server-assigned id (or `backend_id` at creation).
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * Unique human name.
     *
     * @generated from field: string name = 2;
     */
    name: string;
    /**
     * The provider protocol.
     *
     * @generated from field: taskloom.v1.BackendType type = 3;
     */
    type: BackendType;
    /**
     * Base URL, `http` or `https`, e.g. `http://127.0.0.1:11434`. Required,
     * except for the presets (OpenRouter, Mistral, vLLM, LM Studio), which
     * use their default when it is empty.
     *
     * @generated from field: string base_url = 4;
     */
    baseUrl: string;
    /**
     * Input only. The provider API key. Never returned by any RPC.
     *
     * @generated from field: string api_key = 5;
     */
    apiKey: string;
    /**
     * Output only. Whether an API key is stored.
     *
     * @generated from field: bool has_api_key = 6;
     */
    hasApiKey: boolean;
    /**
     * Higher is preferred by the `priority` policy.
     *
     * @generated from field: int32 priority = 7;
     */
    priority: number;
    /**
     * Calls in flight allowed on this backend, across replicas; 0 = unlimited.
     *
     * @generated from field: int32 max_concurrency = 8;
     */
    maxConcurrency: number;
    /**
     * Per-call timeout; unset means 120s.
     *
     * @generated from field: google.protobuf.Duration request_timeout = 9;
     */
    requestTimeout?: Duration | undefined;
    /**
     * Free-form labels.
     *
     * @generated from field: map<string, string> labels = 10;
     */
    labels: {
        [key: string]: string;
    };
    /**
     * Calls started on this backend in any rolling minute, across replicas;
     * 0 = unlimited.
     *
     * @generated from field: int32 requests_per_minute = 11;
     */
    requestsPerMinute: number;
    /**
     * Tokens (input + output) spent on this backend in any rolling minute,
     * across replicas; 0 = unlimited. A call is admitted on an estimate and
     * settled with the provider's count when it ends.
     *
     * @generated from field: int64 tokens_per_minute = 12;
     */
    tokensPerMinute: bigint;
    /**
     * Limits of single models on this backend, by model name.
     *
     * @generated from field: map<string, taskloom.v1.Limits> model_limits = 13;
     */
    modelLimits: {
        [key: string]: Limits;
    };
    /**
     * Never send `stream_options` on streamed calls, for OpenAI-compatible
     * servers that reject it (their streams then carry no token counts, and
     * usage is counted another way; see docs/fleet.md).
     *
     * @generated from field: bool omit_stream_options = 14;
     */
    omitStreamOptions: boolean;
    /**
     * Output only. What the reconciler last saw.
     *
     * @generated from field: taskloom.v1.BackendState state = 20;
     */
    state?: BackendState | undefined;
    /**
     * Output only. Opaque token for optimistic concurrency (AIP-154).
     *
     * @generated from field: string etag = 21;
     */
    etag: string;
    /**
     * Output only.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 22;
     */
    createTime?: Timestamp | undefined;
    /**
     * Output only.
     *
     * @generated from field: google.protobuf.Timestamp update_time = 23;
     */
    updateTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.Backend.
 * Use `create(BackendSchema)` to create a new message.
 */
export declare const BackendSchema: GenMessage<Backend>;
/**
 * Limits on the calls to one model of a backend, across replicas; 0 means
 * unlimited. A call that would exceed one waits (its task stays `READY`).
 *
 * @generated from message taskloom.v1.Limits
 */
export type Limits = Message<"taskloom.v1.Limits"> & {
    /**
     * Calls in flight.
     *
     * @generated from field: int32 max_concurrency = 1;
     */
    maxConcurrency: number;
    /**
     * Calls started in any rolling minute.
     *
     * @generated from field: int32 requests_per_minute = 2;
     */
    requestsPerMinute: number;
    /**
     * Tokens (input + output) in any rolling minute.
     *
     * @generated from field: int64 tokens_per_minute = 3;
     */
    tokensPerMinute: bigint;
};
/**
 * Describes the message taskloom.v1.Limits.
 * Use `create(LimitsSchema)` to create a new message.
 */
export declare const LimitsSchema: GenMessage<Limits>;
/**
 * Observed state of a backend.
 *
 * @generated from message taskloom.v1.BackendState
 */
export type BackendState = Message<"taskloom.v1.BackendState"> & {
    /**
     * Health after the last sync.
     *
     * @generated from field: taskloom.v1.BackendHealth health = 1;
     */
    health: BackendHealth;
    /**
     * Models the backend reported at the last sync.
     *
     * @generated from field: repeated string models = 2;
     */
    models: string[];
    /**
     * The last sync error, if any.
     *
     * @generated from field: string last_error = 3;
     */
    lastError: string;
    /**
     * When the last sync finished.
     *
     * @generated from field: google.protobuf.Timestamp last_sync_time = 4;
     */
    lastSyncTime?: Timestamp | undefined;
    /**
     * Round-trip time of the last model listing.
     *
     * @generated from field: google.protobuf.Duration latency = 5;
     */
    latency?: Duration | undefined;
    /**
     * The models the backend serves, with what the provider says of them.
     *
     * @generated from field: repeated taskloom.v1.ObservedModel observed_models = 6;
     */
    observedModels: ObservedModel[];
    /**
     * When the model list was fetched from the provider. Cloud providers'
     * lists are reused for an hour; `SyncBackend` always fetches anew.
     *
     * @generated from field: google.protobuf.Timestamp models_time = 7;
     */
    modelsTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.BackendState.
 * Use `create(BackendStateSchema)` to create a new message.
 */
export declare const BackendStateSchema: GenMessage<BackendState>;
/**
 * A model a backend reported serving.
 *
 * @generated from message taskloom.v1.ObservedModel
 */
export type ObservedModel = Message<"taskloom.v1.ObservedModel"> & {
    /**
     * The name requests use.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Context window in tokens; 0 when the provider does not say.
     *
     * @generated from field: int32 context_length = 2;
     */
    contextLength: number;
    /**
     * What the provider says it can do; empty when it does not say.
     *
     * @generated from field: repeated taskloom.v1.ModelCapability capabilities = 3;
     */
    capabilities: ModelCapability[];
    /**
     * Size on disk, for local providers that report it.
     *
     * @generated from field: int64 size_bytes = 4;
     */
    sizeBytes: bigint;
};
/**
 * Describes the message taskloom.v1.ObservedModel.
 * Use `create(ObservedModelSchema)` to create a new message.
 */
export declare const ObservedModelSchema: GenMessage<ObservedModel>;
/**
 * A pool groups backends and models; tasks choose a pool.
 *
 * @generated from message taskloom.v1.Pool
 */
export type Pool = Message<"taskloom.v1.Pool"> & {
    /**
     * Unique id, `[A-Za-z0-9_.-]{1,128}`. `internal_tasks_pool`,
     * `internal_embed_pool` and `internal_chat_pool` exist on every install.
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
     * What the pool is for: `tasks`, `embed`, `chat` or free text.
     *
     * @generated from field: string purpose = 3;
     */
    purpose: string;
    /**
     * How the resolver orders the backends that serve one model; unset uses
     * the server's `--selection-policy`.
     *
     * @generated from field: taskloom.v1.SelectionPolicy policy = 4;
     */
    policy: SelectionPolicy;
    /**
     * Output only.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 5;
     */
    createTime?: Timestamp | undefined;
    /**
     * Whether tasks in this pool may use models its backends report serving
     * without the models being declared (capabilities from the provider where
     * it says, else by name). The server's `--discover-models` turns it on
     * for every pool.
     *
     * @generated from field: bool discover_models = 6;
     */
    discoverModels: boolean;
};
/**
 * Describes the message taskloom.v1.Pool.
 * Use `create(PoolSchema)` to create a new message.
 */
export declare const PoolSchema: GenMessage<Pool>;
/**
 * A declared model.
 *
 * @generated from message taskloom.v1.Model
 */
export type Model = Message<"taskloom.v1.Model"> & {
    /**
     * Output only. Server-assigned id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * The model name as providers know it, e.g. `smollm2:135m`; unique.
     *
     * @generated from field: string name = 2;
     */
    name: string;
    /**
     * Context window in tokens; must be positive.
     *
     * @generated from field: int32 context_length = 3;
     */
    contextLength: number;
    /**
     * What the model can do; at least one.
     *
     * @generated from field: repeated taskloom.v1.ModelCapability capabilities = 4;
     */
    capabilities: ModelCapability[];
    /**
     * Output only.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 5;
     */
    createTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.Model.
 * Use `create(ModelSchema)` to create a new message.
 */
export declare const ModelSchema: GenMessage<Model>;
/**
 * Request for BackendService.CreateBackend.
 *
 * @generated from message taskloom.v1.CreateBackendRequest
 */
export type CreateBackendRequest = Message<"taskloom.v1.CreateBackendRequest"> & {
    /**
     * The backend to create.
     *
     * @generated from field: taskloom.v1.Backend backend = 1;
     */
    backend?: Backend | undefined;
    /**
     * Optional id, `[A-Za-z0-9_.-]{1,128}`; generated when empty.
     *
     * @generated from field: string backend_id = 2;
     */
    backendId: string;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 3;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.CreateBackendRequest.
 * Use `create(CreateBackendRequestSchema)` to create a new message.
 */
export declare const CreateBackendRequestSchema: GenMessage<CreateBackendRequest>;
/**
 * Request for BackendService.GetBackend.
 *
 * @generated from message taskloom.v1.GetBackendRequest
 */
export type GetBackendRequest = Message<"taskloom.v1.GetBackendRequest"> & {
    /**
     * The backend id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
};
/**
 * Describes the message taskloom.v1.GetBackendRequest.
 * Use `create(GetBackendRequestSchema)` to create a new message.
 */
export declare const GetBackendRequestSchema: GenMessage<GetBackendRequest>;
/**
 * Request for BackendService.ListBackends.
 *
 * @generated from message taskloom.v1.ListBackendsRequest
 */
export type ListBackendsRequest = Message<"taskloom.v1.ListBackendsRequest"> & {
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
 * Describes the message taskloom.v1.ListBackendsRequest.
 * Use `create(ListBackendsRequestSchema)` to create a new message.
 */
export declare const ListBackendsRequestSchema: GenMessage<ListBackendsRequest>;
/**
 * Response of BackendService.ListBackends and ListPoolBackends.
 *
 * @generated from message taskloom.v1.ListBackendsResponse
 */
export type ListBackendsResponse = Message<"taskloom.v1.ListBackendsResponse"> & {
    /**
     * The backends.
     *
     * @generated from field: repeated taskloom.v1.Backend backends = 1;
     */
    backends: Backend[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListBackendsResponse.
 * Use `create(ListBackendsResponseSchema)` to create a new message.
 */
export declare const ListBackendsResponseSchema: GenMessage<ListBackendsResponse>;
/**
 * Request for BackendService.UpdateBackend.
 *
 * @generated from message taskloom.v1.UpdateBackendRequest
 */
export type UpdateBackendRequest = Message<"taskloom.v1.UpdateBackendRequest"> & {
    /**
     * The backend with its `id` and the new field values.
     *
     * @generated from field: taskloom.v1.Backend backend = 1;
     */
    backend?: Backend | undefined;
    /**
     * Fields to update, e.g. `name,base_url,api_key`. Empty means every
     * writable field (an empty `api_key` then keeps the stored key).
     *
     * @generated from field: repeated string update_mask = 2;
     */
    updateMask: string[];
    /**
     * If set, the update only happens if the backend's etag still matches.
     *
     * @generated from field: string etag = 3;
     */
    etag: string;
};
/**
 * Describes the message taskloom.v1.UpdateBackendRequest.
 * Use `create(UpdateBackendRequestSchema)` to create a new message.
 */
export declare const UpdateBackendRequestSchema: GenMessage<UpdateBackendRequest>;
/**
 * Request for BackendService.DeleteBackend.
 *
 * @generated from message taskloom.v1.DeleteBackendRequest
 */
export type DeleteBackendRequest = Message<"taskloom.v1.DeleteBackendRequest"> & {
    /**
     * The backend id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * If set, the delete only happens if the backend's etag still matches.
     *
     * @generated from field: string etag = 2;
     */
    etag: string;
};
/**
 * Describes the message taskloom.v1.DeleteBackendRequest.
 * Use `create(DeleteBackendRequestSchema)` to create a new message.
 */
export declare const DeleteBackendRequestSchema: GenMessage<DeleteBackendRequest>;
/**
 * Request for BackendService.SyncBackend.
 *
 * @generated from message taskloom.v1.SyncBackendRequest
 */
export type SyncBackendRequest = Message<"taskloom.v1.SyncBackendRequest"> & {
    /**
     * The backend id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
};
/**
 * Describes the message taskloom.v1.SyncBackendRequest.
 * Use `create(SyncBackendRequestSchema)` to create a new message.
 */
export declare const SyncBackendRequestSchema: GenMessage<SyncBackendRequest>;
/**
 * Request for BackendService.CreatePool.
 *
 * @generated from message taskloom.v1.CreatePoolRequest
 */
export type CreatePoolRequest = Message<"taskloom.v1.CreatePoolRequest"> & {
    /**
     * The pool to create; `pool.id` is required.
     *
     * @generated from field: taskloom.v1.Pool pool = 1;
     */
    pool?: Pool | undefined;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.CreatePoolRequest.
 * Use `create(CreatePoolRequestSchema)` to create a new message.
 */
export declare const CreatePoolRequestSchema: GenMessage<CreatePoolRequest>;
/**
 * Request for BackendService.GetPool.
 *
 * @generated from message taskloom.v1.GetPoolRequest
 */
export type GetPoolRequest = Message<"taskloom.v1.GetPoolRequest"> & {
    /**
     * The pool id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
};
/**
 * Describes the message taskloom.v1.GetPoolRequest.
 * Use `create(GetPoolRequestSchema)` to create a new message.
 */
export declare const GetPoolRequestSchema: GenMessage<GetPoolRequest>;
/**
 * Request for BackendService.ListPools.
 *
 * @generated from message taskloom.v1.ListPoolsRequest
 */
export type ListPoolsRequest = Message<"taskloom.v1.ListPoolsRequest"> & {
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
 * Describes the message taskloom.v1.ListPoolsRequest.
 * Use `create(ListPoolsRequestSchema)` to create a new message.
 */
export declare const ListPoolsRequestSchema: GenMessage<ListPoolsRequest>;
/**
 * Response of BackendService.ListPools, ListBackendPools and ListModelPools.
 *
 * @generated from message taskloom.v1.ListPoolsResponse
 */
export type ListPoolsResponse = Message<"taskloom.v1.ListPoolsResponse"> & {
    /**
     * The pools.
     *
     * @generated from field: repeated taskloom.v1.Pool pools = 1;
     */
    pools: Pool[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListPoolsResponse.
 * Use `create(ListPoolsResponseSchema)` to create a new message.
 */
export declare const ListPoolsResponseSchema: GenMessage<ListPoolsResponse>;
/**
 * Request for BackendService.DeletePool.
 *
 * @generated from message taskloom.v1.DeletePoolRequest
 */
export type DeletePoolRequest = Message<"taskloom.v1.DeletePoolRequest"> & {
    /**
     * The pool id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
};
/**
 * Describes the message taskloom.v1.DeletePoolRequest.
 * Use `create(DeletePoolRequestSchema)` to create a new message.
 */
export declare const DeletePoolRequestSchema: GenMessage<DeletePoolRequest>;
/**
 * Request for BackendService.AssignBackendToPool.
 *
 * @generated from message taskloom.v1.AssignBackendToPoolRequest
 */
export type AssignBackendToPoolRequest = Message<"taskloom.v1.AssignBackendToPoolRequest"> & {
    /**
     * The pool id.
     *
     * @generated from field: string pool_id = 1;
     */
    poolId: string;
    /**
     * The backend id.
     *
     * @generated from field: string backend_id = 2;
     */
    backendId: string;
};
/**
 * Describes the message taskloom.v1.AssignBackendToPoolRequest.
 * Use `create(AssignBackendToPoolRequestSchema)` to create a new message.
 */
export declare const AssignBackendToPoolRequestSchema: GenMessage<AssignBackendToPoolRequest>;
/**
 * Request for BackendService.RemoveBackendFromPool.
 *
 * @generated from message taskloom.v1.RemoveBackendFromPoolRequest
 */
export type RemoveBackendFromPoolRequest = Message<"taskloom.v1.RemoveBackendFromPoolRequest"> & {
    /**
     * The pool id.
     *
     * @generated from field: string pool_id = 1;
     */
    poolId: string;
    /**
     * The backend id.
     *
     * @generated from field: string backend_id = 2;
     */
    backendId: string;
};
/**
 * Describes the message taskloom.v1.RemoveBackendFromPoolRequest.
 * Use `create(RemoveBackendFromPoolRequestSchema)` to create a new message.
 */
export declare const RemoveBackendFromPoolRequestSchema: GenMessage<RemoveBackendFromPoolRequest>;
/**
 * Request for BackendService.ListPoolBackends.
 *
 * @generated from message taskloom.v1.ListPoolBackendsRequest
 */
export type ListPoolBackendsRequest = Message<"taskloom.v1.ListPoolBackendsRequest"> & {
    /**
     * The pool id.
     *
     * @generated from field: string pool_id = 1;
     */
    poolId: string;
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
 * Describes the message taskloom.v1.ListPoolBackendsRequest.
 * Use `create(ListPoolBackendsRequestSchema)` to create a new message.
 */
export declare const ListPoolBackendsRequestSchema: GenMessage<ListPoolBackendsRequest>;
/**
 * Request for BackendService.ListBackendPools.
 *
 * @generated from message taskloom.v1.ListBackendPoolsRequest
 */
export type ListBackendPoolsRequest = Message<"taskloom.v1.ListBackendPoolsRequest"> & {
    /**
     * The backend id.
     *
     * @generated from field: string backend_id = 1;
     */
    backendId: string;
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
 * Describes the message taskloom.v1.ListBackendPoolsRequest.
 * Use `create(ListBackendPoolsRequestSchema)` to create a new message.
 */
export declare const ListBackendPoolsRequestSchema: GenMessage<ListBackendPoolsRequest>;
/**
 * Request for BackendService.AssignModelToPool.
 *
 * @generated from message taskloom.v1.AssignModelToPoolRequest
 */
export type AssignModelToPoolRequest = Message<"taskloom.v1.AssignModelToPoolRequest"> & {
    /**
     * The pool id.
     *
     * @generated from field: string pool_id = 1;
     */
    poolId: string;
    /**
     * The model name.
     *
     * @generated from field: string model = 2;
     */
    model: string;
};
/**
 * Describes the message taskloom.v1.AssignModelToPoolRequest.
 * Use `create(AssignModelToPoolRequestSchema)` to create a new message.
 */
export declare const AssignModelToPoolRequestSchema: GenMessage<AssignModelToPoolRequest>;
/**
 * Request for BackendService.RemoveModelFromPool.
 *
 * @generated from message taskloom.v1.RemoveModelFromPoolRequest
 */
export type RemoveModelFromPoolRequest = Message<"taskloom.v1.RemoveModelFromPoolRequest"> & {
    /**
     * The pool id.
     *
     * @generated from field: string pool_id = 1;
     */
    poolId: string;
    /**
     * The model name.
     *
     * @generated from field: string model = 2;
     */
    model: string;
};
/**
 * Describes the message taskloom.v1.RemoveModelFromPoolRequest.
 * Use `create(RemoveModelFromPoolRequestSchema)` to create a new message.
 */
export declare const RemoveModelFromPoolRequestSchema: GenMessage<RemoveModelFromPoolRequest>;
/**
 * Request for BackendService.ListPoolModels.
 *
 * @generated from message taskloom.v1.ListPoolModelsRequest
 */
export type ListPoolModelsRequest = Message<"taskloom.v1.ListPoolModelsRequest"> & {
    /**
     * The pool id.
     *
     * @generated from field: string pool_id = 1;
     */
    poolId: string;
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
 * Describes the message taskloom.v1.ListPoolModelsRequest.
 * Use `create(ListPoolModelsRequestSchema)` to create a new message.
 */
export declare const ListPoolModelsRequestSchema: GenMessage<ListPoolModelsRequest>;
/**
 * Request for BackendService.ListModelPools.
 *
 * @generated from message taskloom.v1.ListModelPoolsRequest
 */
export type ListModelPoolsRequest = Message<"taskloom.v1.ListModelPoolsRequest"> & {
    /**
     * The model name.
     *
     * @generated from field: string model = 1;
     */
    model: string;
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
 * Describes the message taskloom.v1.ListModelPoolsRequest.
 * Use `create(ListModelPoolsRequestSchema)` to create a new message.
 */
export declare const ListModelPoolsRequestSchema: GenMessage<ListModelPoolsRequest>;
/**
 * Request for BackendService.CreateModel.
 *
 * @generated from message taskloom.v1.CreateModelRequest
 */
export type CreateModelRequest = Message<"taskloom.v1.CreateModelRequest"> & {
    /**
     * The model to declare.
     *
     * @generated from field: taskloom.v1.Model model = 1;
     */
    model?: Model | undefined;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.CreateModelRequest.
 * Use `create(CreateModelRequestSchema)` to create a new message.
 */
export declare const CreateModelRequestSchema: GenMessage<CreateModelRequest>;
/**
 * Request for BackendService.GetModel.
 *
 * @generated from message taskloom.v1.GetModelRequest
 */
export type GetModelRequest = Message<"taskloom.v1.GetModelRequest"> & {
    /**
     * The model name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
};
/**
 * Describes the message taskloom.v1.GetModelRequest.
 * Use `create(GetModelRequestSchema)` to create a new message.
 */
export declare const GetModelRequestSchema: GenMessage<GetModelRequest>;
/**
 * Request for BackendService.ListModels.
 *
 * @generated from message taskloom.v1.ListModelsRequest
 */
export type ListModelsRequest = Message<"taskloom.v1.ListModelsRequest"> & {
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
 * Describes the message taskloom.v1.ListModelsRequest.
 * Use `create(ListModelsRequestSchema)` to create a new message.
 */
export declare const ListModelsRequestSchema: GenMessage<ListModelsRequest>;
/**
 * Response of BackendService.ListModels and ListPoolModels.
 *
 * @generated from message taskloom.v1.ListModelsResponse
 */
export type ListModelsResponse = Message<"taskloom.v1.ListModelsResponse"> & {
    /**
     * The models.
     *
     * @generated from field: repeated taskloom.v1.Model models = 1;
     */
    models: Model[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListModelsResponse.
 * Use `create(ListModelsResponseSchema)` to create a new message.
 */
export declare const ListModelsResponseSchema: GenMessage<ListModelsResponse>;
/**
 * Request for BackendService.DeleteModel.
 *
 * @generated from message taskloom.v1.DeleteModelRequest
 */
export type DeleteModelRequest = Message<"taskloom.v1.DeleteModelRequest"> & {
    /**
     * The model name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
};
/**
 * Describes the message taskloom.v1.DeleteModelRequest.
 * Use `create(DeleteModelRequestSchema)` to create a new message.
 */
export declare const DeleteModelRequestSchema: GenMessage<DeleteModelRequest>;
/**
 * Request for BackendService.PullModel.
 *
 * @generated from message taskloom.v1.PullModelRequest
 */
export type PullModelRequest = Message<"taskloom.v1.PullModelRequest"> & {
    /**
     * An Ollama backend id.
     *
     * @generated from field: string backend_id = 1;
     */
    backendId: string;
    /**
     * The model to pull.
     *
     * @generated from field: string model = 2;
     */
    model: string;
};
/**
 * Describes the message taskloom.v1.PullModelRequest.
 * Use `create(PullModelRequestSchema)` to create a new message.
 */
export declare const PullModelRequestSchema: GenMessage<PullModelRequest>;
/**
 * One progress report of a model download.
 *
 * @generated from message taskloom.v1.PullModelProgress
 */
export type PullModelProgress = Message<"taskloom.v1.PullModelProgress"> & {
    /**
     * Ollama's status line, e.g. `pulling manifest`.
     *
     * @generated from field: string status = 1;
     */
    status: string;
    /**
     * Bytes downloaded so far.
     *
     * @generated from field: int64 completed_bytes = 2;
     */
    completedBytes: bigint;
    /**
     * Total bytes, when known.
     *
     * @generated from field: int64 total_bytes = 3;
     */
    totalBytes: bigint;
    /**
     * True on the last message.
     *
     * @generated from field: bool done = 4;
     */
    done: boolean;
};
/**
 * Describes the message taskloom.v1.PullModelProgress.
 * Use `create(PullModelProgressSchema)` to create a new message.
 */
export declare const PullModelProgressSchema: GenMessage<PullModelProgress>;
/**
 * Request for BackendService.ExecutePrompt.
 *
 * @generated from message taskloom.v1.ExecutePromptRequest
 */
export type ExecutePromptRequest = Message<"taskloom.v1.ExecutePromptRequest"> & {
    /**
     * The prompt.
     *
     * @generated from field: string prompt = 1;
     */
    prompt: string;
    /**
     * Optional system instruction.
     *
     * @generated from field: string system_instruction = 2;
     */
    systemInstruction: string;
    /**
     * Models in order of preference; empty lets the resolver choose.
     *
     * @generated from field: repeated string models = 3;
     */
    models: string[];
    /**
     * Pool to resolve in (default `internal_tasks_pool`).
     *
     * @generated from field: string pool = 4;
     */
    pool: string;
    /**
     * Sampling temperature.
     *
     * @generated from field: optional float temperature = 5;
     */
    temperature?: number | undefined;
    /**
     * Completion token cap.
     *
     * @generated from field: int32 max_tokens = 6;
     */
    maxTokens: number;
};
/**
 * Describes the message taskloom.v1.ExecutePromptRequest.
 * Use `create(ExecutePromptRequestSchema)` to create a new message.
 */
export declare const ExecutePromptRequestSchema: GenMessage<ExecutePromptRequest>;
/**
 * Response of BackendService.ExecutePrompt.
 *
 * @generated from message taskloom.v1.ExecutePromptResponse
 */
export type ExecutePromptResponse = Message<"taskloom.v1.ExecutePromptResponse"> & {
    /**
     * The completion.
     *
     * @generated from field: string text = 1;
     */
    text: string;
    /**
     * The model that answered.
     *
     * @generated from field: string model = 2;
     */
    model: string;
    /**
     * The backend that answered.
     *
     * @generated from field: string backend_id = 3;
     */
    backendId: string;
    /**
     * Tokens spent.
     *
     * @generated from field: taskloom.v1.TokenUsage usage = 4;
     */
    usage?: TokenUsage | undefined;
};
/**
 * Describes the message taskloom.v1.ExecutePromptResponse.
 * Use `create(ExecutePromptResponseSchema)` to create a new message.
 */
export declare const ExecutePromptResponseSchema: GenMessage<ExecutePromptResponse>;
/**
 * Request for BackendService.Embed.
 *
 * @generated from message taskloom.v1.EmbedRequest
 */
export type EmbedRequest = Message<"taskloom.v1.EmbedRequest"> & {
    /**
     * The text to embed.
     *
     * @generated from field: string text = 1;
     */
    text: string;
    /**
     * Models in order of preference; empty lets the resolver choose.
     *
     * @generated from field: repeated string models = 2;
     */
    models: string[];
    /**
     * Pool to resolve in (default `internal_embed_pool`).
     *
     * @generated from field: string pool = 3;
     */
    pool: string;
};
/**
 * Describes the message taskloom.v1.EmbedRequest.
 * Use `create(EmbedRequestSchema)` to create a new message.
 */
export declare const EmbedRequestSchema: GenMessage<EmbedRequest>;
/**
 * Response of BackendService.Embed.
 *
 * @generated from message taskloom.v1.EmbedResponse
 */
export type EmbedResponse = Message<"taskloom.v1.EmbedResponse"> & {
    /**
     * The embedding.
     *
     * @generated from field: taskloom.v1.Vector vector = 1;
     */
    vector?: Vector | undefined;
    /**
     * The model that answered.
     *
     * @generated from field: string model = 2;
     */
    model: string;
    /**
     * The backend that answered.
     *
     * @generated from field: string backend_id = 3;
     */
    backendId: string;
    /**
     * Tokens spent.
     *
     * @generated from field: taskloom.v1.TokenUsage usage = 4;
     */
    usage?: TokenUsage | undefined;
};
/**
 * Describes the message taskloom.v1.EmbedResponse.
 * Use `create(EmbedResponseSchema)` to create a new message.
 */
export declare const EmbedResponseSchema: GenMessage<EmbedResponse>;
/**
 * The provider protocol a backend speaks.
 *
 * @generated from enum taskloom.v1.BackendType
 */
export declare enum BackendType {
    /**
     * Not specified; rejected.
     *
     * @generated from enum value: BACKEND_TYPE_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * Ollama (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`).
     *
     * @generated from enum value: BACKEND_TYPE_OLLAMA = 1;
     */
    OLLAMA = 1,
    /**
     * OpenAI.
     *
     * @generated from enum value: BACKEND_TYPE_OPENAI = 2;
     */
    OPENAI = 2,
    /**
     * Any OpenAI-compatible server: vLLM, llama.cpp, LM Studio, OpenRouter,
     * Mistral.
     *
     * @generated from enum value: BACKEND_TYPE_OPENAI_COMPATIBLE = 3;
     */
    OPENAI_COMPATIBLE = 3,
    /**
     * Google Gemini.
     *
     * @generated from enum value: BACKEND_TYPE_GEMINI = 4;
     */
    GEMINI = 4,
    /**
     * Anthropic.
     *
     * @generated from enum value: BACKEND_TYPE_ANTHROPIC = 5;
     */
    ANTHROPIC = 5,
    /**
     * OpenRouter (OpenAI-compatible; default base URL
     * `https://openrouter.ai/api`, bearer key).
     *
     * @generated from enum value: BACKEND_TYPE_OPENROUTER = 6;
     */
    OPENROUTER = 6,
    /**
     * Mistral (OpenAI-compatible; default base URL `https://api.mistral.ai`,
     * bearer key).
     *
     * @generated from enum value: BACKEND_TYPE_MISTRAL = 7;
     */
    MISTRAL = 7,
    /**
     * vLLM's OpenAI server (default base URL `http://127.0.0.1:8000`, optional
     * bearer key).
     *
     * @generated from enum value: BACKEND_TYPE_VLLM = 8;
     */
    VLLM = 8,
    /**
     * LM Studio's local server (default base URL `http://127.0.0.1:1234`, no
     * key).
     *
     * @generated from enum value: BACKEND_TYPE_LM_STUDIO = 9;
     */
    LM_STUDIO = 9
}
/**
 * Describes the enum taskloom.v1.BackendType.
 */
export declare const BackendTypeSchema: GenEnum<BackendType>;
/**
 * How the resolver picks among backends that serve a model.
 *
 * @generated from enum taskloom.v1.SelectionPolicy
 */
export declare enum SelectionPolicy {
    /**
     * The server's default (`--selection-policy`, round robin unless set).
     *
     * @generated from enum value: SELECTION_POLICY_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * Round robin.
     *
     * @generated from enum value: SELECTION_POLICY_ROUND_ROBIN = 1;
     */
    ROUND_ROBIN = 1,
    /**
     * The backend with the fewest calls in flight.
     *
     * @generated from enum value: SELECTION_POLICY_LEAST_LOADED = 2;
     */
    LEAST_LOADED = 2,
    /**
     * Uniformly at random.
     *
     * @generated from enum value: SELECTION_POLICY_RANDOM = 3;
     */
    RANDOM = 3,
    /**
     * The backend with the highest `priority`; ties by name.
     *
     * @generated from enum value: SELECTION_POLICY_PRIORITY = 4;
     */
    PRIORITY = 4
}
/**
 * Describes the enum taskloom.v1.SelectionPolicy.
 */
export declare const SelectionPolicySchema: GenEnum<SelectionPolicy>;
/**
 * Health of a backend as last observed by the reconciler.
 *
 * @generated from enum taskloom.v1.BackendHealth
 */
export declare enum BackendHealth {
    /**
     * Never synced.
     *
     * @generated from enum value: BACKEND_HEALTH_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * The last sync succeeded.
     *
     * @generated from enum value: BACKEND_HEALTH_HEALTHY = 1;
     */
    HEALTHY = 1,
    /**
     * The last sync failed.
     *
     * @generated from enum value: BACKEND_HEALTH_UNHEALTHY = 2;
     */
    UNHEALTHY = 2
}
/**
 * Describes the enum taskloom.v1.BackendHealth.
 */
export declare const BackendHealthSchema: GenEnum<BackendHealth>;
/**
 * What a model can do.
 *
 * @generated from enum taskloom.v1.ModelCapability
 */
export declare enum ModelCapability {
    /**
     * Not specified; rejected.
     *
     * @generated from enum value: MODEL_CAPABILITY_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * Chat completions.
     *
     * @generated from enum value: MODEL_CAPABILITY_CHAT = 1;
     */
    CHAT = 1,
    /**
     * Single-prompt completions.
     *
     * @generated from enum value: MODEL_CAPABILITY_PROMPT = 2;
     */
    PROMPT = 2,
    /**
     * Embeddings.
     *
     * @generated from enum value: MODEL_CAPABILITY_EMBED = 3;
     */
    EMBED = 3,
    /**
     * Streamed output.
     *
     * @generated from enum value: MODEL_CAPABILITY_STREAM = 4;
     */
    STREAM = 4
}
/**
 * Describes the enum taskloom.v1.ModelCapability.
 */
export declare const ModelCapabilitySchema: GenEnum<ModelCapability>;
/**
 * BackendService manages LLM backends, the pools that group them, declared
 * models, and one-shot model calls.
 *
 * @generated from service taskloom.v1.BackendService
 */
export declare const BackendService: GenService<{
    /**
     * Registers a backend. `ALREADY_EXISTS` if the name is taken.
     *
     * @generated from rpc taskloom.v1.BackendService.CreateBackend
     */
    createBackend: {
        methodKind: "unary";
        input: typeof CreateBackendRequestSchema;
        output: typeof BackendSchema;
    };
    /**
     * Returns a backend (never its API key).
     *
     * @generated from rpc taskloom.v1.BackendService.GetBackend
     */
    getBackend: {
        methodKind: "unary";
        input: typeof GetBackendRequestSchema;
        output: typeof BackendSchema;
    };
    /**
     * Lists backends ordered by name.
     *
     * @generated from rpc taskloom.v1.BackendService.ListBackends
     */
    listBackends: {
        methodKind: "unary";
        input: typeof ListBackendsRequestSchema;
        output: typeof ListBackendsResponseSchema;
    };
    /**
     * Updates the fields named in `update_mask`.
     *
     * @generated from rpc taskloom.v1.BackendService.UpdateBackend
     */
    updateBackend: {
        methodKind: "unary";
        input: typeof UpdateBackendRequestSchema;
        output: typeof BackendSchema;
    };
    /**
     * Deletes a backend and its pool memberships.
     *
     * @generated from rpc taskloom.v1.BackendService.DeleteBackend
     */
    deleteBackend: {
        methodKind: "unary";
        input: typeof DeleteBackendRequestSchema;
        output: typeof EmptySchema;
    };
    /**
     * Syncs one backend now instead of at its next cycle: checks its health,
     * fetches its model list anew (dropping a cached cloud list), records what
     * it saw, and starts pulls of declared models it misses (Ollama). Returns
     * the backend with its new observed state; the sync is recorded even when
     * the backend is unreachable (then `state.health` is `UNHEALTHY`).
     *
     * @generated from rpc taskloom.v1.BackendService.SyncBackend
     */
    syncBackend: {
        methodKind: "unary";
        input: typeof SyncBackendRequestSchema;
        output: typeof BackendSchema;
    };
    /**
     * Creates a pool.
     *
     * @generated from rpc taskloom.v1.BackendService.CreatePool
     */
    createPool: {
        methodKind: "unary";
        input: typeof CreatePoolRequestSchema;
        output: typeof PoolSchema;
    };
    /**
     * Returns a pool.
     *
     * @generated from rpc taskloom.v1.BackendService.GetPool
     */
    getPool: {
        methodKind: "unary";
        input: typeof GetPoolRequestSchema;
        output: typeof PoolSchema;
    };
    /**
     * Lists pools ordered by id.
     *
     * @generated from rpc taskloom.v1.BackendService.ListPools
     */
    listPools: {
        methodKind: "unary";
        input: typeof ListPoolsRequestSchema;
        output: typeof ListPoolsResponseSchema;
    };
    /**
     * Deletes a pool and its associations.
     *
     * @generated from rpc taskloom.v1.BackendService.DeletePool
     */
    deletePool: {
        methodKind: "unary";
        input: typeof DeletePoolRequestSchema;
        output: typeof EmptySchema;
    };
    /**
     * Adds a backend to a pool (idempotent).
     *
     * @generated from rpc taskloom.v1.BackendService.AssignBackendToPool
     */
    assignBackendToPool: {
        methodKind: "unary";
        input: typeof AssignBackendToPoolRequestSchema;
        output: typeof EmptySchema;
    };
    /**
     * Removes a backend from a pool. `NOT_FOUND` if it was not a member.
     *
     * @generated from rpc taskloom.v1.BackendService.RemoveBackendFromPool
     */
    removeBackendFromPool: {
        methodKind: "unary";
        input: typeof RemoveBackendFromPoolRequestSchema;
        output: typeof EmptySchema;
    };
    /**
     * Lists the backends in a pool.
     *
     * @generated from rpc taskloom.v1.BackendService.ListPoolBackends
     */
    listPoolBackends: {
        methodKind: "unary";
        input: typeof ListPoolBackendsRequestSchema;
        output: typeof ListBackendsResponseSchema;
    };
    /**
     * Lists the pools a backend belongs to.
     *
     * @generated from rpc taskloom.v1.BackendService.ListBackendPools
     */
    listBackendPools: {
        methodKind: "unary";
        input: typeof ListBackendPoolsRequestSchema;
        output: typeof ListPoolsResponseSchema;
    };
    /**
     * Adds a model to a pool (idempotent).
     *
     * @generated from rpc taskloom.v1.BackendService.AssignModelToPool
     */
    assignModelToPool: {
        methodKind: "unary";
        input: typeof AssignModelToPoolRequestSchema;
        output: typeof EmptySchema;
    };
    /**
     * Removes a model from a pool. `NOT_FOUND` if it was not a member.
     *
     * @generated from rpc taskloom.v1.BackendService.RemoveModelFromPool
     */
    removeModelFromPool: {
        methodKind: "unary";
        input: typeof RemoveModelFromPoolRequestSchema;
        output: typeof EmptySchema;
    };
    /**
     * Lists the models in a pool.
     *
     * @generated from rpc taskloom.v1.BackendService.ListPoolModels
     */
    listPoolModels: {
        methodKind: "unary";
        input: typeof ListPoolModelsRequestSchema;
        output: typeof ListModelsResponseSchema;
    };
    /**
     * Lists the pools a model belongs to.
     *
     * @generated from rpc taskloom.v1.BackendService.ListModelPools
     */
    listModelPools: {
        methodKind: "unary";
        input: typeof ListModelPoolsRequestSchema;
        output: typeof ListPoolsResponseSchema;
    };
    /**
     * Declares a model. `ALREADY_EXISTS` if the name is taken.
     *
     * @generated from rpc taskloom.v1.BackendService.CreateModel
     */
    createModel: {
        methodKind: "unary";
        input: typeof CreateModelRequestSchema;
        output: typeof ModelSchema;
    };
    /**
     * Returns a declared model.
     *
     * @generated from rpc taskloom.v1.BackendService.GetModel
     */
    getModel: {
        methodKind: "unary";
        input: typeof GetModelRequestSchema;
        output: typeof ModelSchema;
    };
    /**
     * Lists declared models ordered by name.
     *
     * @generated from rpc taskloom.v1.BackendService.ListModels
     */
    listModels: {
        methodKind: "unary";
        input: typeof ListModelsRequestSchema;
        output: typeof ListModelsResponseSchema;
    };
    /**
     * Deletes a declared model and its pool memberships.
     *
     * @generated from rpc taskloom.v1.BackendService.DeleteModel
     */
    deleteModel: {
        methodKind: "unary";
        input: typeof DeleteModelRequestSchema;
        output: typeof EmptySchema;
    };
    /**
     * Downloads a model onto an Ollama backend, streaming progress; the last
     * message has `done`. One download runs at a time per backend: a second
     * pull waits for the first. `FAILED_PRECONDITION` for a backend that is
     * not Ollama; a failed download ends the stream with `UNAVAILABLE` (or
     * `NOT_FOUND` for a model the registry does not have).
     *
     * @generated from rpc taskloom.v1.BackendService.PullModel
     */
    pullModel: {
        methodKind: "server_streaming";
        input: typeof PullModelRequestSchema;
        output: typeof PullModelProgressSchema;
    };
    /**
     * Runs one prompt through the resolver, as a `raw_string` task would.
     *
     * @generated from rpc taskloom.v1.BackendService.ExecutePrompt
     */
    executePrompt: {
        methodKind: "unary";
        input: typeof ExecutePromptRequestSchema;
        output: typeof ExecutePromptResponseSchema;
    };
    /**
     * Embeds one text through the resolver, as an `embedding` task would.
     *
     * @generated from rpc taskloom.v1.BackendService.Embed
     */
    embed: {
        methodKind: "unary";
        input: typeof EmbedRequestSchema;
        output: typeof EmbedResponseSchema;
    };
}>;
//# sourceMappingURL=backend_pb.d.ts.map