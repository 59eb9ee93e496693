import type { GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Duration, EmptySchema, Timestamp } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/hook.proto.
 */
export declare const file_taskloom_v1_hook: GenFile;
/**
 * An HTTP endpoint a chain can call.
 *
 * @generated from message taskloom.v1.Hook
 */
export type Hook = Message<"taskloom.v1.Hook"> & {
    /**
     * Unique name, `[A-Za-z0-9_.-]{1,128}`; chains refer to it.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Free text.
     *
     * @generated from field: string description = 2;
     */
    description: string;
    /**
     * Absolute `http` or `https` URL.
     *
     * @generated from field: string url = 3;
     */
    url: string;
    /**
     * `GET`, `POST`, `PUT`, `PATCH` or `DELETE` (default `POST`).
     *
     * @generated from field: string method = 4;
     */
    method: string;
    /**
     * Per-call deadline; must be positive.
     *
     * @generated from field: google.protobuf.Duration timeout = 5;
     */
    timeout?: Duration | undefined;
    /**
     * Headers sent on every call.
     *
     * @generated from field: map<string, string> headers = 6;
     */
    headers: {
        [key: string]: string;
    };
    /**
     * Input only. Headers whose values are secrets (e.g. `Authorization`):
     * sent on every call, never returned, never logged.
     *
     * @generated from field: map<string, string> secret_headers = 7;
     */
    secretHeaders: {
        [key: string]: string;
    };
    /**
     * Output only. Names of the stored secret headers.
     *
     * @generated from field: repeated string secret_header_names = 8;
     */
    secretHeaderNames: string[];
    /**
     * Route calls to this worker queue instead of calling the URL from the
     * server.
     *
     * @generated from field: string queue = 9;
     */
    queue: string;
    /**
     * Output only. Opaque token for optimistic concurrency (AIP-154).
     *
     * @generated from field: string etag = 20;
     */
    etag: string;
    /**
     * Output only.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 21;
     */
    createTime?: Timestamp | undefined;
    /**
     * Output only.
     *
     * @generated from field: google.protobuf.Timestamp update_time = 22;
     */
    updateTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.Hook.
 * Use `create(HookSchema)` to create a new message.
 */
export declare const HookSchema: GenMessage<Hook>;
/**
 * Request for HookService.CreateHook.
 *
 * @generated from message taskloom.v1.CreateHookRequest
 */
export type CreateHookRequest = Message<"taskloom.v1.CreateHookRequest"> & {
    /**
     * The hook to register.
     *
     * @generated from field: taskloom.v1.Hook hook = 1;
     */
    hook?: Hook | undefined;
    /**
     * Idempotency key (AIP-155).
     *
     * @generated from field: string request_id = 2;
     */
    requestId: string;
};
/**
 * Describes the message taskloom.v1.CreateHookRequest.
 * Use `create(CreateHookRequestSchema)` to create a new message.
 */
export declare const CreateHookRequestSchema: GenMessage<CreateHookRequest>;
/**
 * Request for HookService.GetHook.
 *
 * @generated from message taskloom.v1.GetHookRequest
 */
export type GetHookRequest = Message<"taskloom.v1.GetHookRequest"> & {
    /**
     * The hook name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
};
/**
 * Describes the message taskloom.v1.GetHookRequest.
 * Use `create(GetHookRequestSchema)` to create a new message.
 */
export declare const GetHookRequestSchema: GenMessage<GetHookRequest>;
/**
 * Request for HookService.ListHooks.
 *
 * @generated from message taskloom.v1.ListHooksRequest
 */
export type ListHooksRequest = Message<"taskloom.v1.ListHooksRequest"> & {
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
 * Describes the message taskloom.v1.ListHooksRequest.
 * Use `create(ListHooksRequestSchema)` to create a new message.
 */
export declare const ListHooksRequestSchema: GenMessage<ListHooksRequest>;
/**
 * Response of HookService.ListHooks.
 *
 * @generated from message taskloom.v1.ListHooksResponse
 */
export type ListHooksResponse = Message<"taskloom.v1.ListHooksResponse"> & {
    /**
     * The hooks.
     *
     * @generated from field: repeated taskloom.v1.Hook hooks = 1;
     */
    hooks: Hook[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message taskloom.v1.ListHooksResponse.
 * Use `create(ListHooksResponseSchema)` to create a new message.
 */
export declare const ListHooksResponseSchema: GenMessage<ListHooksResponse>;
/**
 * Request for HookService.UpdateHook.
 *
 * @generated from message taskloom.v1.UpdateHookRequest
 */
export type UpdateHookRequest = Message<"taskloom.v1.UpdateHookRequest"> & {
    /**
     * The hook with its `name` and the new field values.
     *
     * @generated from field: taskloom.v1.Hook hook = 1;
     */
    hook?: Hook | undefined;
    /**
     * Fields to update, e.g. `url,timeout`. Empty means every writable field
     * (empty `secret_headers` then keeps the stored ones).
     *
     * @generated from field: repeated string update_mask = 2;
     */
    updateMask: string[];
    /**
     * If set, the update only happens if the hook's etag still matches.
     *
     * @generated from field: string etag = 3;
     */
    etag: string;
};
/**
 * Describes the message taskloom.v1.UpdateHookRequest.
 * Use `create(UpdateHookRequestSchema)` to create a new message.
 */
export declare const UpdateHookRequestSchema: GenMessage<UpdateHookRequest>;
/**
 * Request for HookService.DeleteHook.
 *
 * @generated from message taskloom.v1.DeleteHookRequest
 */
export type DeleteHookRequest = Message<"taskloom.v1.DeleteHookRequest"> & {
    /**
     * The hook name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * If set, the delete only happens if the hook's etag still matches.
     *
     * @generated from field: string etag = 2;
     */
    etag: string;
};
/**
 * Describes the message taskloom.v1.DeleteHookRequest.
 * Use `create(DeleteHookRequestSchema)` to create a new message.
 */
export declare const DeleteHookRequestSchema: GenMessage<DeleteHookRequest>;
/**
 * HookService registers HTTP hooks that `hook` tasks call.
 *
 * @generated from service taskloom.v1.HookService
 */
export declare const HookService: GenService<{
    /**
     * Registers a hook. `ALREADY_EXISTS` if the name is taken.
     *
     * @generated from rpc taskloom.v1.HookService.CreateHook
     */
    createHook: {
        methodKind: "unary";
        input: typeof CreateHookRequestSchema;
        output: typeof HookSchema;
    };
    /**
     * Returns a hook (never its secret header values).
     *
     * @generated from rpc taskloom.v1.HookService.GetHook
     */
    getHook: {
        methodKind: "unary";
        input: typeof GetHookRequestSchema;
        output: typeof HookSchema;
    };
    /**
     * Lists hooks ordered by name.
     *
     * @generated from rpc taskloom.v1.HookService.ListHooks
     */
    listHooks: {
        methodKind: "unary";
        input: typeof ListHooksRequestSchema;
        output: typeof ListHooksResponseSchema;
    };
    /**
     * Updates the fields named in `update_mask`.
     *
     * @generated from rpc taskloom.v1.HookService.UpdateHook
     */
    updateHook: {
        methodKind: "unary";
        input: typeof UpdateHookRequestSchema;
        output: typeof HookSchema;
    };
    /**
     * Deletes a hook.
     *
     * @generated from rpc taskloom.v1.HookService.DeleteHook
     */
    deleteHook: {
        methodKind: "unary";
        input: typeof DeleteHookRequestSchema;
        output: typeof EmptySchema;
    };
}>;
//# sourceMappingURL=hook_pb.d.ts.map