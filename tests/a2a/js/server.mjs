// A foreign A2A server (@a2a-js/sdk + express) that agentcomm consumes. Skills:
// "reverse" answers with a message; "countdown" is a task streaming artifacts and
// progress; "wait" is a task that works until canceled. Prints "listening <url>".
import express from "express";
import { Role, TaskState } from "@a2a-js/sdk";
import { DefaultRequestHandler, InMemoryTaskStore } from "@a2a-js/sdk/server";
import { agentCardHandler, jsonRpcHandler, UserBuilder } from "@a2a-js/sdk/server/express";

const port = Number(process.argv[2]);
const url = `http://127.0.0.1:${port}/`;
const textPart = (value) => ({ content: { $case: "text", value }, metadata: undefined, filename: "", mediaType: "" });
const skill = (id, description) => ({ id, name: id, description, tags: ["js"], examples: [], inputModes: [], outputModes: [], securityRequirements: [] });
const card = {
  name: "js-agent",
  description: "An agent written with the A2A JavaScript SDK",
  supportedInterfaces: [{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion: "1.0" }],
  provider: undefined,
  version: "1.0.0",
  documentationUrl: undefined,
  capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
  securitySchemes: {},
  securityRequirements: [],
  defaultInputModes: ["text/plain"],
  defaultOutputModes: ["text/plain"],
  skills: [skill("reverse", "Reverse the text"), skill("countdown", "Count down from n"), skill("wait", "Work until canceled")],
  signatures: [],
  iconUrl: undefined,
};
const running = new Map();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const status = (state, text) => ({ state, message: text ? { messageId: `s-${Math.random()}`, contextId: "", taskId: "", role: Role.ROLE_AGENT, parts: [textPart(text)], metadata: undefined, extensions: [], referenceTaskIds: [] } : undefined, timestamp: new Date().toISOString() });

const executor = {
  async execute(ctx, bus) {
    const msg = ctx.userMessage;
    const which = msg.metadata?.skill ?? "reverse";
    const input = msg.parts.map((p) => (p.content?.$case === "text" ? p.content.value : JSON.stringify(p.content?.value))).join("");
    if (which === "reverse") {
      bus.publish({ kind: "message", data: { messageId: `m-${Math.random()}`, contextId: ctx.contextId, taskId: "", role: Role.ROLE_AGENT, parts: [textPart([...input].reverse().join(""))], metadata: undefined, extensions: [], referenceTaskIds: [] } });
      bus.finished();
      return;
    }
    const base = { id: ctx.taskId, contextId: ctx.contextId, artifacts: [], history: [msg], metadata: undefined };
    bus.publish({ kind: "task", data: { ...base, status: status(TaskState.TASK_STATE_WORKING) } });
    const upd = (st) => bus.publish({ kind: "statusUpdate", data: { taskId: ctx.taskId, contextId: ctx.contextId, status: st, metadata: undefined } });
    if (which === "countdown") {
      const n = Number(JSON.parse(input).n ?? 3);
      for (let i = n; i > 0; i--) {
        upd(status(TaskState.TASK_STATE_WORKING, `${n - i + 1}/${n}`));
        bus.publish({ kind: "artifactUpdate", data: { taskId: ctx.taskId, contextId: ctx.contextId, artifact: { artifactId: "count", name: "count", description: "", parts: [textPart(String(i))], metadata: undefined, extensions: [] }, append: i !== n, lastChunk: i === 1, metadata: undefined } });
        await sleep(20);
      }
      upd(status(TaskState.TASK_STATE_COMPLETED));
    } else {
      running.set(ctx.taskId, true);
      while (running.get(ctx.taskId)) await sleep(20);
      upd(status(TaskState.TASK_STATE_CANCELED));
    }
    bus.finished();
  },
  async cancelTask(taskId, bus) {
    running.set(taskId, false);
  },
};

const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), executor);
const app = express();
app.use("/.well-known/agent-card.json", agentCardHandler({ agentCardProvider: async () => card }));
app.use("/", jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
app.listen(port, "127.0.0.1", () => console.log(`listening ${url}`));
