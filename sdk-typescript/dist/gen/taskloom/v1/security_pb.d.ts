import type { GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/security.proto.
 */
export declare const file_taskloom_v1_security: GenFile;
/**
 * An API key as listed: everything but its secret.
 *
 * @generated from message taskloom.v1.ApiKey
 */
export type ApiKey = Message<"taskloom.v1.ApiKey"> & {
    /**
     * `k_` and 12 hex digits; audit entries name the key `key:<id>`.
     *
     * @generated from field: string id = 1;
     */
    id: string;
    /**
     * A name for people, e.g. `ci-deployer`.
     *
     * @generated from field: string name = 2;
     */
    name: string;
    /**
     * `admin`, `operator`, `worker` or `viewer`.
     *
     * @generated from field: string role = 3;
     */
    role: string;
    /**
     * The only namespace the key may name; empty for every namespace.
     *
     * @generated from field: string namespace = 4;
     */
    namespace: string;
    /**
     * For worker keys: the only queues the key may serve; empty for any.
     *
     * @generated from field: repeated string queues = 5;
     */
    queues: string[];
    /**
     * The first 8 characters of the secret, to recognise it in a config.
     *
     * @generated from field: string prefix = 6;
     */
    prefix: string;
    /**
     * When the key was created.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 7;
     */
    createTime?: Timestamp | undefined;
    /**
     * Who created it (`key:<id>`, `local`, or `cli` for `taskloom keys create`).
     *
     * @generated from field: string created_by = 8;
     */
    createdBy: string;
    /**
     * When it was last used (recorded at most about once a minute); unset
     * if never.
     *
     * @generated from field: google.protobuf.Timestamp last_used_time = 9;
     */
    lastUsedTime?: Timestamp | undefined;
    /**
     * When it stops working; unset if never.
     *
     * @generated from field: google.protobuf.Timestamp expire_time = 10;
     */
    expireTime?: Timestamp | undefined;
    /**
     * When it was revoked; unset if it is not.
     *
     * @generated from field: google.protobuf.Timestamp revoke_time = 11;
     */
    revokeTime?: Timestamp | undefined;
};
/**
 * Describes the message taskloom.v1.ApiKey.
 * Use `create(ApiKeySchema)` to create a new message.
 */
export declare const ApiKeySchema: GenMessage<ApiKey>;
/**
 * Request of CreateApiKey.
 *
 * @generated from message taskloom.v1.CreateApiKeyRequest
 */
export type CreateApiKeyRequest = Message<"taskloom.v1.CreateApiKeyRequest"> & {
    /**
     * A name for people; required, at most 128 characters.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * `admin`, `operator`, `worker` or `viewer`.
     *
     * @generated from field: string role = 2;
     */
    role: string;
    /**
     * Binds the key to one namespace; empty for every namespace.
     *
     * @generated from field: string namespace = 3;
     */
    namespace: string;
    /**
     * For worker keys only: the queues the key may serve; empty for any.
     *
     * @generated from field: repeated string queues = 4;
     */
    queues: string[];
    /**
     * When the key stops working; unset (with `ttl` unset) for never.
     *
     * @generated from field: google.protobuf.Timestamp expire_time = 5;
     */
    expireTime?: Timestamp | undefined;
    /**
     * How long the key works from now; exclusive with `expire_time`.
     *
     * @generated from field: google.protobuf.Duration ttl = 6;
     */
    ttl?: Duration | undefined;
};
/**
 * Describes the message taskloom.v1.CreateApiKeyRequest.
 * Use `create(CreateApiKeyRequestSchema)` to create a new message.
 */
export declare const CreateApiKeyRequestSchema: GenMessage<CreateApiKeyRequest>;
/**
 * Response of CreateApiKey.
 *
 * @generated from message taskloom.v1.CreateApiKeyResponse
 */
export type CreateApiKeyResponse = Message<"taskloom.v1.CreateApiKeyResponse"> & {
    /**
     * The key, as ListApiKeys shows it.
     *
     * @generated from field: taskloom.v1.ApiKey key = 1;
     */
    key?: ApiKey | undefined;
    /**
     * The secret, `tlk_…`: send it as `authorization: Bearer <secret>`. It
     * is not stored and cannot be shown again.
     *
     * @generated from field: string secret = 2;
     */
    secret: string;
};
/**
 * Describes the message taskloom.v1.CreateApiKeyResponse.
 * Use `create(CreateApiKeyResponseSchema)` to create a new message.
 */
export declare const CreateApiKeyResponseSchema: GenMessage<CreateApiKeyResponse>;
/**
 * Request of ListApiKeys.
 *
 * @generated from message taskloom.v1.ListApiKeysRequest
 */
export type ListApiKeysRequest = Message<"taskloom.v1.ListApiKeysRequest"> & {};
/**
 * Describes the message taskloom.v1.ListApiKeysRequest.
 * Use `create(ListApiKeysRequestSchema)` to create a new message.
 */
export declare const ListApiKeysRequestSchema: GenMessage<ListApiKeysRequest>;
/**
 * Response of ListApiKeys.
 *
 * @generated from message taskloom.v1.ListApiKeysResponse
 */
export type ListApiKeysResponse = Message<"taskloom.v1.ListApiKeysResponse"> & {
    /**
     * Every key, oldest first.
     *
     * @generated from field: repeated taskloom.v1.ApiKey keys = 1;
     */
    keys: ApiKey[];
};
/**
 * Describes the message taskloom.v1.ListApiKeysResponse.
 * Use `create(ListApiKeysResponseSchema)` to create a new message.
 */
export declare const ListApiKeysResponseSchema: GenMessage<ListApiKeysResponse>;
/**
 * Request of RevokeApiKey.
 *
 * @generated from message taskloom.v1.RevokeApiKeyRequest
 */
export type RevokeApiKeyRequest = Message<"taskloom.v1.RevokeApiKeyRequest"> & {
    /**
     * The key's id.
     *
     * @generated from field: string id = 1;
     */
    id: string;
};
/**
 * Describes the message taskloom.v1.RevokeApiKeyRequest.
 * Use `create(RevokeApiKeyRequestSchema)` to create a new message.
 */
export declare const RevokeApiKeyRequestSchema: GenMessage<RevokeApiKeyRequest>;
/**
 * A namespace: an isolated set of chains, runs, hooks, workers and queues.
 *
 * @generated from message taskloom.v1.Namespace
 */
export type Namespace = Message<"taskloom.v1.Namespace"> & {
    /**
     * 1 to 63 lowercase letters, digits and `-`.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Free text for people.
     *
     * @generated from field: string description = 2;
     */
    description: string;
    /**
     * The pools the namespace's LLM tasks may use; empty for every pool.
     * Backends, pools and models are shared: admins manage them.
     *
     * @generated from field: repeated string pools = 3;
     */
    pools: string[];
    /**
     * When the namespace was created.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 4;
     */
    createTime?: Timestamp | undefined;
    /**
     * Who created it (`key:<id>`, `local`, or `system` for `default`).
     *
     * @generated from field: string created_by = 5;
     */
    createdBy: string;
};
/**
 * Describes the message taskloom.v1.Namespace.
 * Use `create(NamespaceSchema)` to create a new message.
 */
export declare const NamespaceSchema: GenMessage<Namespace>;
/**
 * Request of CreateNamespace.
 *
 * @generated from message taskloom.v1.CreateNamespaceRequest
 */
export type CreateNamespaceRequest = Message<"taskloom.v1.CreateNamespaceRequest"> & {
    /**
     * The new namespace's name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Free text for people, at most 1,024 characters.
     *
     * @generated from field: string description = 2;
     */
    description: string;
    /**
     * The pools its LLM tasks may use; empty for every pool. Each must exist.
     *
     * @generated from field: repeated string pools = 3;
     */
    pools: string[];
};
/**
 * Describes the message taskloom.v1.CreateNamespaceRequest.
 * Use `create(CreateNamespaceRequestSchema)` to create a new message.
 */
export declare const CreateNamespaceRequestSchema: GenMessage<CreateNamespaceRequest>;
/**
 * Request of GetNamespace.
 *
 * @generated from message taskloom.v1.GetNamespaceRequest
 */
export type GetNamespaceRequest = Message<"taskloom.v1.GetNamespaceRequest"> & {
    /**
     * The namespace's name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
};
/**
 * Describes the message taskloom.v1.GetNamespaceRequest.
 * Use `create(GetNamespaceRequestSchema)` to create a new message.
 */
export declare const GetNamespaceRequestSchema: GenMessage<GetNamespaceRequest>;
/**
 * Request of ListNamespaces.
 *
 * @generated from message taskloom.v1.ListNamespacesRequest
 */
export type ListNamespacesRequest = Message<"taskloom.v1.ListNamespacesRequest"> & {};
/**
 * Describes the message taskloom.v1.ListNamespacesRequest.
 * Use `create(ListNamespacesRequestSchema)` to create a new message.
 */
export declare const ListNamespacesRequestSchema: GenMessage<ListNamespacesRequest>;
/**
 * Response of ListNamespaces.
 *
 * @generated from message taskloom.v1.ListNamespacesResponse
 */
export type ListNamespacesResponse = Message<"taskloom.v1.ListNamespacesResponse"> & {
    /**
     * The namespaces the caller may see, by name.
     *
     * @generated from field: repeated taskloom.v1.Namespace namespaces = 1;
     */
    namespaces: Namespace[];
};
/**
 * Describes the message taskloom.v1.ListNamespacesResponse.
 * Use `create(ListNamespacesResponseSchema)` to create a new message.
 */
export declare const ListNamespacesResponseSchema: GenMessage<ListNamespacesResponse>;
/**
 * Request of UpdateNamespace: the new description and pools replace the
 * old ones.
 *
 * @generated from message taskloom.v1.UpdateNamespaceRequest
 */
export type UpdateNamespaceRequest = Message<"taskloom.v1.UpdateNamespaceRequest"> & {
    /**
     * The namespace's name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Free text for people, at most 1,024 characters.
     *
     * @generated from field: string description = 2;
     */
    description: string;
    /**
     * The pools its LLM tasks may use; empty for every pool. Each must exist.
     *
     * @generated from field: repeated string pools = 3;
     */
    pools: string[];
};
/**
 * Describes the message taskloom.v1.UpdateNamespaceRequest.
 * Use `create(UpdateNamespaceRequestSchema)` to create a new message.
 */
export declare const UpdateNamespaceRequestSchema: GenMessage<UpdateNamespaceRequest>;
/**
 * Request of DeleteNamespace.
 *
 * @generated from message taskloom.v1.DeleteNamespaceRequest
 */
export type DeleteNamespaceRequest = Message<"taskloom.v1.DeleteNamespaceRequest"> & {
    /**
     * The namespace's name.
     *
     * @generated from field: string name = 1;
     */
    name: string;
};
/**
 * Describes the message taskloom.v1.DeleteNamespaceRequest.
 * Use `create(DeleteNamespaceRequestSchema)` to create a new message.
 */
export declare const DeleteNamespaceRequestSchema: GenMessage<DeleteNamespaceRequest>;
/**
 * Response of DeleteNamespace.
 *
 * @generated from message taskloom.v1.DeleteNamespaceResponse
 */
export type DeleteNamespaceResponse = Message<"taskloom.v1.DeleteNamespaceResponse"> & {
    /**
     * The finished runs deleted with it.
     *
     * @generated from field: int64 deleted_runs = 1;
     */
    deletedRuns: bigint;
};
/**
 * Describes the message taskloom.v1.DeleteNamespaceResponse.
 * Use `create(DeleteNamespaceResponseSchema)` to create a new message.
 */
export declare const DeleteNamespaceResponseSchema: GenMessage<DeleteNamespaceResponse>;
/**
 * KeyService manages the API keys kept in the store (docs/security.md).
 * Every call needs the `admin` role. A key's secret is returned once, by
 * CreateApiKey; the store keeps only its SHA-256 digest.
 *
 * @generated from service taskloom.v1.KeyService
 */
export declare const KeyService: GenService<{
    /**
     * Creates a key and returns its secret (the only time it is shown).
     *
     * @generated from rpc taskloom.v1.KeyService.CreateApiKey
     */
    createApiKey: {
        methodKind: "unary";
        input: typeof CreateApiKeyRequestSchema;
        output: typeof CreateApiKeyResponseSchema;
    };
    /**
     * Lists every key, revoked and expired ones included; never a secret.
     *
     * @generated from rpc taskloom.v1.KeyService.ListApiKeys
     */
    listApiKeys: {
        methodKind: "unary";
        input: typeof ListApiKeysRequestSchema;
        output: typeof ListApiKeysResponseSchema;
    };
    /**
     * Revokes a key: every replica refuses it (UNAUTHENTICATED) within a
     * second. Revoking a revoked key changes nothing.
     *
     * @generated from rpc taskloom.v1.KeyService.RevokeApiKey
     */
    revokeApiKey: {
        methodKind: "unary";
        input: typeof RevokeApiKeyRequestSchema;
        output: typeof ApiKeySchema;
    };
}>;
/**
 * NamespaceService manages namespaces (docs/security.md). Chains, runs,
 * hooks, worker sessions and queues belong to one namespace; a call names
 * its namespace in the `x-taskloom-namespace` metadata (`default` if it
 * names none), and sees nothing of any other. `default` exists on every
 * install and cannot be deleted. Creating, updating and deleting need the
 * `admin` role on a key bound to no namespace.
 *
 * @generated from service taskloom.v1.NamespaceService
 */
export declare const NamespaceService: GenService<{
    /**
     * Creates a namespace. ALREADY_EXISTS if the name is taken.
     *
     * @generated from rpc taskloom.v1.NamespaceService.CreateNamespace
     */
    createNamespace: {
        methodKind: "unary";
        input: typeof CreateNamespaceRequestSchema;
        output: typeof NamespaceSchema;
    };
    /**
     * One namespace; NOT_FOUND if it does not exist (or, for a key bound to
     * another namespace, is not the key's).
     *
     * @generated from rpc taskloom.v1.NamespaceService.GetNamespace
     */
    getNamespace: {
        methodKind: "unary";
        input: typeof GetNamespaceRequestSchema;
        output: typeof NamespaceSchema;
    };
    /**
     * Every namespace, by name; a key bound to one namespace sees that one.
     *
     * @generated from rpc taskloom.v1.NamespaceService.ListNamespaces
     */
    listNamespaces: {
        methodKind: "unary";
        input: typeof ListNamespacesRequestSchema;
        output: typeof ListNamespacesResponseSchema;
    };
    /**
     * Changes a namespace's description and the pools it may use.
     *
     * @generated from rpc taskloom.v1.NamespaceService.UpdateNamespace
     */
    updateNamespace: {
        methodKind: "unary";
        input: typeof UpdateNamespaceRequestSchema;
        output: typeof NamespaceSchema;
    };
    /**
     * Deletes a namespace with its chains, hooks, finished runs and paused
     * queues, and revokes the keys bound to it, in one transaction.
     * FAILED_PRECONDITION while it holds a run that has not finished, and for
     * `default`.
     *
     * @generated from rpc taskloom.v1.NamespaceService.DeleteNamespace
     */
    deleteNamespace: {
        methodKind: "unary";
        input: typeof DeleteNamespaceRequestSchema;
        output: typeof DeleteNamespaceResponseSchema;
    };
}>;
//# sourceMappingURL=security_pb.d.ts.map