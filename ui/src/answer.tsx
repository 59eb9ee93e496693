// The answer box of a run waiting for human input (run page and approvals).

import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema as JsonValueSchema } from "@bufbuild/protobuf/wkt";
import type { JsonValue } from "@bufbuild/protobuf";
import { useState } from "preact/hooks";
import { requestId, runs } from "./api.js";
import type { Run } from "./gen/taskloom/v1/run_pb.js";
import { ErrorBox } from "./ui.js";

export function AnswerForm({ run, onAnswered }: { run: Run; onAnswered: (run: Run) => void }) {
  const [text, setText] = useState("");
  const [asJson, setAsJson] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const [parseError, setParseError] = useState("");
  const [busy, setBusy] = useState(false);
  const taskId = run.inputRequest?.taskId ?? "";
  const submit = async (e: Event) => {
    e.preventDefault();
    let json: JsonValue = text;
    if (asJson) {
      try {
        json = JSON.parse(text) as JsonValue;
      } catch (err) {
        setParseError(`not JSON: ${String(err)}`);
        return;
      }
    }
    setParseError("");
    setBusy(true);
    try {
      const answered = await runs.submitInput({
        runId: run.id,
        taskId,
        answer: { case: "input", value: fromJson(JsonValueSchema, json) },
        requestId: requestId(),
      });
      setError(undefined);
      setText("");
      onAnswered(answered);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="answer" onSubmit={submit} data-run={run.id}>
      {run.inputRequest?.prompt && <div class="prompt">{run.inputRequest.prompt}</div>}
      <textarea
        name="answer"
        rows={2}
        placeholder={`answer for task ${taskId}`}
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
      />
      <div class="row">
        <label class="inline">
          <input type="checkbox" checked={asJson} onChange={(e) => setAsJson(e.currentTarget.checked)} /> as JSON
        </label>
        <button type="submit" name="submit-answer" disabled={busy}>
          Answer
        </button>
      </div>
      {parseError && <div class="error">{parseError}</div>}
      <ErrorBox error={error} />
    </form>
  );
}
