import type { GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file taskloom/v1/info.proto.
 */
export declare const file_taskloom_v1_info: GenFile;
/**
 * Request for InfoService.GetVersion.
 *
 * @generated from message taskloom.v1.GetVersionRequest
 */
export type GetVersionRequest = Message<"taskloom.v1.GetVersionRequest"> & {};
/**
 * Describes the message taskloom.v1.GetVersionRequest.
 * Use `create(GetVersionRequestSchema)` to create a new message.
 */
export declare const GetVersionRequestSchema: GenMessage<GetVersionRequest>;
/**
 * Response of InfoService.GetVersion.
 *
 * @generated from message taskloom.v1.GetVersionResponse
 */
export type GetVersionResponse = Message<"taskloom.v1.GetVersionResponse"> & {
    /**
     * Server version (semver).
     *
     * @generated from field: string version = 1;
     */
    version: string;
    /**
     * API version, `v1`.
     *
     * @generated from field: string api_version = 2;
     */
    apiVersion: string;
    /**
     * Storage backend: `sqlite` or `postgres`.
     *
     * @generated from field: string store = 3;
     */
    store: string;
    /**
     * Feature flags this server implements, e.g. `chains`, `runs`, `workers`.
     *
     * @generated from field: repeated string features = 4;
     */
    features: string[];
    /**
     * This replica's instance id.
     *
     * @generated from field: string instance_id = 5;
     */
    instanceId: string;
};
/**
 * Describes the message taskloom.v1.GetVersionResponse.
 * Use `create(GetVersionResponseSchema)` to create a new message.
 */
export declare const GetVersionResponseSchema: GenMessage<GetVersionResponse>;
/**
 * InfoService tells clients what this server is and can do.
 *
 * @generated from service taskloom.v1.InfoService
 */
export declare const InfoService: GenService<{
    /**
     * Returns the server version and features, for SDK feature detection.
     *
     * @generated from rpc taskloom.v1.InfoService.GetVersion
     */
    getVersion: {
        methodKind: "unary";
        input: typeof GetVersionRequestSchema;
        output: typeof GetVersionResponseSchema;
    };
}>;
//# sourceMappingURL=info_pb.d.ts.map