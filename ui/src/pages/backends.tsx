// Backends: every provider backend with its health and the models it
// reports, the pools that route to them, and the declared models.

import { useState } from "preact/hooks";
import { backends } from "../api.js";
import { ago, duration, time } from "../format.js";
import { BackendHealth, BackendType, ModelCapability, SelectionPolicy } from "../gen/taskloom/v1/backend_pb.js";
import { Empty, ErrorBox, usePoll } from "../ui.js";

const name = (table: Record<number, string>, v: number) =>
  (table[v] ?? String(v)).replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();

async function poolsWithMembers() {
  const { pools } = await backends.listPools({ pageSize: 1000 });
  return Promise.all(
    pools.map(async (pool) => {
      const [members, models] = await Promise.all([
        backends.listPoolBackends({ poolId: pool.id, pageSize: 1000 }),
        backends.listPoolModels({ poolId: pool.id, pageSize: 1000 }),
      ]);
      return { pool, backends: members.backends, models: models.models };
    }),
  );
}

/** Asks the server to check a backend now (SyncBackend): health, latency, models. */
function SyncButton({ id, onDone }: { id: string; onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  return (
    <>
      <button
        type="button"
        class="secondary"
        name="sync"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          try {
            await backends.syncBackend({ id });
            setError(undefined);
          } catch (e) {
            setError(e);
          } finally {
            setBusy(false);
            onDone();
          }
        }}
      >
        Sync
      </button>
      <ErrorBox error={error} />
    </>
  );
}

export function BackendsPage() {
  const now = Date.now();
  const list = usePoll(() => backends.listBackends({ pageSize: 1000 }), [], 5000);
  const pools = usePoll(poolsWithMembers, [], 10000);
  const models = usePoll(() => backends.listModels({ pageSize: 1000 }), [], 10000);
  return (
    <section>
      <h1>Backends</h1>
      <div class="card">
        <h2>Backends</h2>
        <ErrorBox error={list.error} />
        {list.data && list.data.backends.length === 0 && <Empty>No backend is registered.</Empty>}
        {list.data && list.data.backends.length > 0 && (
          <table class="backends">
            <thead>
              <tr>
                <th>Backend</th>
                <th>Type</th>
                <th>URL</th>
                <th>Health</th>
                <th>Latency</th>
                <th>Models</th>
                <th>Synced</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {list.data.backends.map((b) => {
                const health = b.state?.health ? name(BackendHealth, b.state.health) : "not checked";
                const observed = b.state?.observedModels.length
                  ? b.state.observedModels.map((m) => m.name)
                  : (b.state?.models ?? []);
                return (
                  <tr key={b.id} data-backend={b.name}>
                    <td>
                      <b>{b.name}</b>
                      <div class="muted mono">{b.id}</div>
                    </td>
                    <td>{name(BackendType, b.type)}</td>
                    <td class="mono">{b.baseUrl}</td>
                    <td>
                      <span class={`badge h-${health.replace(" ", "_")}`} data-health={health}>
                        {health}
                      </span>
                      {b.state?.lastError && <div class="muted">{b.state.lastError}</div>}
                    </td>
                    <td>
                      {b.state?.latency
                        ? duration(Number(b.state.latency.seconds) * 1000 + b.state.latency.nanos / 1e6)
                        : ""}
                    </td>
                    <td>{observed.join(", ")}</td>
                    <td title={time(b.state?.lastSyncTime)}>{ago(b.state?.lastSyncTime, now)}</td>
                    <td>
                      <SyncButton id={b.id} onDone={list.reload} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </div>
      <div class="card">
        <h2>Pools</h2>
        <ErrorBox error={pools.error} />
        {pools.data && pools.data.length === 0 && <Empty>No pools.</Empty>}
        {pools.data && pools.data.length > 0 && (
          <table class="pools">
            <thead>
              <tr>
                <th>Pool</th>
                <th>Purpose</th>
                <th>Policy</th>
                <th>Backends</th>
                <th>Models</th>
              </tr>
            </thead>
            <tbody>
              {pools.data.map(({ pool, backends: members, models: poolModels }) => (
                <tr key={pool.id}>
                  <td>
                    <b>{pool.id}</b>
                    {pool.description && <div class="muted">{pool.description}</div>}
                  </td>
                  <td>{pool.purpose}</td>
                  <td>{pool.policy ? name(SelectionPolicy, pool.policy) : "default"}</td>
                  <td>{members.map((b) => b.name).join(", ")}</td>
                  <td>
                    {pool.discoverModels ? "discovered" : ""}
                    {poolModels.map((m) => m.name).join(", ")}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <div class="card">
        <h2>Models</h2>
        <ErrorBox error={models.error} />
        {models.data && models.data.models.length === 0 && <Empty>No declared models.</Empty>}
        {models.data && models.data.models.length > 0 && (
          <table>
            <thead>
              <tr>
                <th>Model</th>
                <th>Context</th>
                <th>Capabilities</th>
              </tr>
            </thead>
            <tbody>
              {models.data.models.map((m) => (
                <tr key={m.id}>
                  <td>{m.name}</td>
                  <td>{m.contextLength || ""}</td>
                  <td>{m.capabilities.map((c) => name(ModelCapability, c)).join(", ")}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </section>
  );
}
