// A foreign A2A client (@a2a-js/sdk) calling an agentcomm exposure: card, send,
// stream with progress, input-required round trip, cancel. Prints one JSON line per step.
import { ClientFactory } from "@a2a-js/sdk/client";
import { Role, TaskState } from "@a2a-js/sdk";

const url = process.argv[2];
const out = (step, value) => console.log(JSON.stringify({ step, value }));
const text = (parts) => parts.filter((p) => p.content?.$case === "text").map((p) => p.content.value).join("");
let n = 0;
const message = (t, skill, taskId = "") => ({
  messageId: `js-${++n}`,
  contextId: "",
  taskId,
  role: Role.ROLE_USER,
  parts: [{ content: { $case: "text", value: t }, metadata: undefined, filename: "", mediaType: "" }],
  metadata: skill ? { skill } : undefined,
  extensions: [],
  referenceTaskIds: [],
});
const request = (msg, returnImmediately = false) => ({
  tenant: "",
  message: msg,
  configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, historyLength: undefined, returnImmediately },
  metadata: undefined,
});

const client = await new ClientFactory().createFromUrl(url);
const card = await (await fetch(new URL("/.well-known/agent-card.json", url))).json();
out("card", { name: card.name, skills: card.skills.map((s) => s.id), streaming: card.capabilities.streaming });

const sent = await client.sendMessage(request(message("hello tea", "translate")));
out("send", text((sent.payload?.value ?? sent).parts ?? []));

const letters = [];
let progress = 0;
for await (const ev of client.sendMessageStream(request(message("tea", "spell")))) {
  const p = ev.payload;
  if (p?.$case === "artifactUpdate") letters.push(text(p.value.artifact.parts));
  if (p?.$case === "statusUpdate" && p.value.status?.message) progress += 1;
}
out("stream", { letters, progress });

let taskId = "";
let state = "";
for await (const ev of client.sendMessageStream(request(message("a taxi", "chat")))) {
  const p = ev.payload;
  if (p?.$case === "task") taskId = p.value.id;
  const st = p?.$case === "task" ? p.value.status : p?.$case === "statusUpdate" ? p.value.status : undefined;
  if (st) state = TaskState[st.state];
}
out("asked", { state });
const answered = await client.sendMessage(request(message("bye", "chat", taskId)));
const task = answered.payload?.value ?? answered;
out("answered", { state: TaskState[task.status.state], result: text(task.artifacts.at(-1)?.parts ?? []) });

const other = await client.sendMessage(request(message("a room", "chat"), true));
const otherTask = other.payload?.value ?? other;
const canceled = await client.cancelTask({ tenant: "", id: otherTask.id, metadata: undefined });
out("canceled", { state: TaskState[canceled.status.state] });
const fetched = await client.getTask({ tenant: "", id: otherTask.id, historyLength: undefined });
out("get", { state: TaskState[fetched.status.state] });
try {
  await client.getTask({ tenant: "", id: "0".repeat(32), historyLength: undefined });
  out("missing", "no error");
} catch (e) {
  out("missing", { name: e.constructor.name, message: String(e.message).slice(0, 80) });
}
