// The app shell: navigation, the API key and namespace box, and the pages.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { apiKey, namespace, namespaces, onSettingsChange, saveSettings } from "./api.js";
import { onAskForKey, usePoll, useRoute } from "./ui.js";
import { RunsPage } from "./pages/runs.js";
import { RunPage } from "./pages/run.js";
import { ApprovalsPage } from "./pages/approvals.js";
import { ChainsPage } from "./pages/chains.js";
import { WorkersPage } from "./pages/workers.js";
import { BackendsPage } from "./pages/backends.js";
import "./style.css";

const PAGES: [string, string][] = [
  ["runs", "Runs"],
  ["approvals", "Approvals"],
  ["chains", "Chains"],
  ["workers", "Workers & queues"],
  ["backends", "Backends"],
];

function Settings({ onClose }: { onClose: () => void }) {
  const [key, setKey] = useState(apiKey());
  const [ns, setNs] = useState(namespace());
  return (
    <form
      class="settings"
      onSubmit={(e) => {
        e.preventDefault();
        saveSettings(key, ns);
        onClose();
      }}
    >
      <label>
        API key
        <input
          type="password"
          name="api-key"
          autocomplete="off"
          placeholder="tlk_… (empty when the server has no keys)"
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
        />
      </label>
      <label>
        Namespace
        <input
          name="namespace"
          placeholder="default"
          value={ns}
          onInput={(e) => setNs(e.currentTarget.value)}
        />
      </label>
      <button type="submit">Save</button>
      <button type="button" class="secondary" onClick={onClose}>
        Close
      </button>
      <small>Kept in this tab's session storage only.</small>
    </form>
  );
}

/**
 * The namespaces the key may see, to switch between; absent when the list
 * cannot be read (no key yet, or a role without the permission): the key
 * box still takes a namespace by name.
 */
function NamespacePicker() {
  const { data } = usePoll(() => namespaces.listNamespaces({}), [], 60_000);
  const current = namespace() || "default";
  const names = data?.namespaces.map((n) => n.name) ?? [];
  if (names.length <= 1 && names[0] === current) return null;
  if (names.length === 0) return null;
  if (!names.includes(current)) names.unshift(current);
  return (
    <select
      class="namespace"
      name="namespace-picker"
      aria-label="namespace"
      value={current}
      onChange={(e) => saveSettings(apiKey(), e.currentTarget.value === "default" ? "" : e.currentTarget.value)}
    >
      {names.map((n) => (
        <option key={n} value={n}>
          {n}
        </option>
      ))}
    </select>
  );
}

function App() {
  const route = useRoute();
  const [showSettings, setShowSettings] = useState(false);
  // A new key or namespace: every page reloads what it shows.
  const [generation, setGeneration] = useState(0);
  useEffect(() => onAskForKey(() => setShowSettings(true)), []);
  useEffect(() => onSettingsChange(() => setGeneration((g) => g + 1)), []);
  const page = route[0] ?? "runs";
  let body;
  switch (page) {
    case "runs":
      body = route[1] ? <RunPage key={route[1]} id={route[1]} /> : <RunsPage />;
      break;
    case "approvals":
      body = <ApprovalsPage />;
      break;
    case "chains":
      body = <ChainsPage id={route[1]} />;
      break;
    case "workers":
      body = <WorkersPage />;
      break;
    case "backends":
      body = <BackendsPage />;
      break;
    default:
      body = <p class="empty">No page here. <a href="#/runs">Runs</a></p>;
  }
  const ns = namespace();
  return (
    <>
      <header>
        <a class="brand" href="#/runs">
          Taskloom
        </a>
        <nav>
          {PAGES.map(([id, label]) => (
            <a key={id} href={`#/${id}`} class={page === id ? "active" : ""}>
              {label}
            </a>
          ))}
        </nav>
        <NamespacePicker key={generation} />
        <button type="button" class="key" onClick={() => setShowSettings((s) => !s)}>
          {apiKey() ? "🔑 key set" : "API key"}
          {ns ? ` · ${ns}` : ""}
        </button>
      </header>
      {showSettings && <Settings onClose={() => setShowSettings(false)} />}
      <main key={generation}>{body}</main>
    </>
  );
}

render(<App />, document.getElementById("app") as HTMLElement);
