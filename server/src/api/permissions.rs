//! Roles and permissions (docs/security.md). Every RPC names its one
//! permission where its service is declared (the `service!` invocations of
//! this module's siblings); [`rpc_permissions`] gathers them into the one
//! table that the tests check against the served descriptors, RPC by RPC.

use std::fmt;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything: keys, shared infrastructure (backends, pools, models),
    /// replicas.
    Admin,
    /// Chains, runs, hooks, queues, dead letters, workers and the audit
    /// log; reads shared infrastructure and may call models directly.
    Operator,
    /// Serves tasks (WorkerService Connect, CompleteTask, FailTask,
    /// ExtendLease), optionally only on listed queues.
    Worker,
    /// Reads (get, list, watch), except keys and the audit log.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Worker, Role::Viewer];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Worker => "worker",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }

    /// Whether this role holds `permission`.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => !matches!(
                permission,
                InfraWrite | ReplicasWrite | KeysManage | NamespacesManage | WorkerServe
            ),
            Role::Viewer => matches!(
                permission,
                ChainsRead
                    | RunsRead
                    | HooksRead
                    | QueuesRead
                    | WorkersRead
                    | InfraRead
                    | ReplicasRead
                    | NamespacesRead
                    | InfoRead
            ),
            Role::Worker => matches!(permission, WorkerServe | InfoRead),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The permission an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Get, list and validate chains and their versions.
    ChainsRead,
    ChainsWrite,
    /// Get, list and watch runs, their events and attempts; dead letters.
    RunsRead,
    /// Start, execute, cancel, pause, resume, retry, replay, delete runs;
    /// submit input.
    RunsWrite,
    HooksRead,
    HooksWrite,
    QueuesRead,
    /// Pause and resume queues.
    QueuesWrite,
    /// List connected workers.
    WorkersRead,
    /// Serve tasks: Connect, CompleteTask, FailTask, ExtendLease.
    WorkerServe,
    AuditRead,
    /// Get and list backends, pools and models (shared infrastructure).
    InfraRead,
    /// Change backends, pools and models; sync backends, pull models.
    InfraWrite,
    /// Call a model directly (ExecutePrompt, Embed).
    ModelsCall,
    ReplicasRead,
    /// Drain a replica.
    ReplicasWrite,
    /// Create, list and revoke API keys.
    KeysManage,
    /// Get and list namespaces (a key bound to one sees that one).
    NamespacesRead,
    /// Create, update and delete namespaces (a key bound to none).
    NamespacesManage,
    /// The server's version.
    InfoRead,
}

impl Permission {
    pub const ALL: [Permission; 20] = [
        Permission::ChainsRead,
        Permission::ChainsWrite,
        Permission::RunsRead,
        Permission::RunsWrite,
        Permission::HooksRead,
        Permission::HooksWrite,
        Permission::QueuesRead,
        Permission::QueuesWrite,
        Permission::WorkersRead,
        Permission::WorkerServe,
        Permission::AuditRead,
        Permission::InfraRead,
        Permission::InfraWrite,
        Permission::ModelsCall,
        Permission::ReplicasRead,
        Permission::ReplicasWrite,
        Permission::KeysManage,
        Permission::NamespacesRead,
        Permission::NamespacesManage,
        Permission::InfoRead,
    ];

    /// As `ErrorInfo.metadata["permission"]` and docs/security.md name it.
    pub fn name(self) -> &'static str {
        match self {
            Permission::ChainsRead => "chains.read",
            Permission::ChainsWrite => "chains.write",
            Permission::RunsRead => "runs.read",
            Permission::RunsWrite => "runs.write",
            Permission::HooksRead => "hooks.read",
            Permission::HooksWrite => "hooks.write",
            Permission::QueuesRead => "queues.read",
            Permission::QueuesWrite => "queues.write",
            Permission::WorkersRead => "workers.read",
            Permission::WorkerServe => "workers.serve",
            Permission::AuditRead => "audit.read",
            Permission::InfraRead => "infrastructure.read",
            Permission::InfraWrite => "infrastructure.write",
            Permission::ModelsCall => "models.call",
            Permission::ReplicasRead => "replicas.read",
            Permission::ReplicasWrite => "replicas.write",
            Permission::KeysManage => "keys.manage",
            Permission::NamespacesRead => "namespaces.read",
            Permission::NamespacesManage => "namespaces.manage",
            Permission::InfoRead => "info.read",
        }
    }

    /// Whether the permission acts on the resources of the call's
    /// namespace (which must then exist); the others act on shared ones.
    pub fn in_namespace(self) -> bool {
        use Permission::*;
        matches!(
            self,
            ChainsRead
                | ChainsWrite
                | RunsRead
                | RunsWrite
                | HooksRead
                | HooksWrite
                | QueuesRead
                | QueuesWrite
                | WorkersRead
                | WorkerServe
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One RPC and the permission it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcPermission {
    /// The full service name, e.g. `taskloom.v1.RunService`.
    pub service: String,
    /// The method as gRPC names it, e.g. `GetRun`.
    pub method: String,
    pub permission: Permission,
}

/// The method name gRPC uses for a handler's name: `get_run` -> `GetRun`.
pub fn grpc_method(handler: &str) -> String {
    handler
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}
