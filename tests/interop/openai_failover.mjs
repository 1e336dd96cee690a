// n > 1 across a decode failover, through the official `openai` npm
// client: a streamed n = 3 request whose decode node is SIGKILLed mid-way
// gives the same three texts as an undisturbed run (each choice's tokens
// so far are re-prefilled elsewhere; sampling is keyed by seed and
// position). Usage: node openai_failover.mjs BASE_URL MODEL VICTIMS FIRST,
// VICTIMS a decode node's PID, or PID:HTTP_PORT,... of every decode node:
// then the one running sequences is killed (the choices share one node).
import OpenAI from "openai";

const [baseURL, model, victim, first] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused-on-loopback", maxRetries: 0, timeout: 120000 });
let failed = 0;
let n = Number(first ?? 1) - 1;

function check(cond, what) {
  n++;
  console.log(`${cond ? "ok" : "not ok"} ${n} - ${what}`);
  if (!cond) failed++;
}

const req = { model, prompt: "Once upon a time", max_tokens: 500, temperature: 0.8, seed: 77, n: 3,
              ignore_eos: true, stream: true };

// The pid of the decode node that runs the choices now.
async function victimPid() {
  const all = victim.split(",").map((v) => v.split(":"));
  if (all.length === 1 && all[0].length === 1) {
    return Number(all[0][0]);
  }
  for (const [pid, port] of all) {
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = body.match(/^baton_node_running_sequences (\S+)$/m);
    if (m && Number(m[1]) > 0) {
      return Number(pid);
    }
  }
  return Number(all[0][0]);
}

async function run(killAfter) {
  const texts = ["", "", ""], chunks = [0, 0, 0], finishes = [null, null, null];
  let killedAt = null;
  const s = await client.completions.create(req);
  for await (const ch of s) {
    for (const c of ch.choices) {
      texts[c.index] += c.text;
      chunks[c.index]++;
      if (c.finish_reason) finishes[c.index] = c.finish_reason;
    }
    if (killAfter && killedAt === null && chunks.every((k) => k >= killAfter)) {
      killedAt = [...chunks];
      process.kill(await victimPid(), "SIGKILL");
    }
  }
  return { texts, finishes, killedAt };
}

const ref = await run(0);
check(ref.finishes.every((f) => f === "length") && new Set(ref.texts).size === 3,
      "reference: n = 3, 500 tokens each, three different texts");
const got = await run(20);
check(got.killedAt !== null && got.killedAt.every((k) => k < 500),
      `a decode node killed after ${JSON.stringify(got.killedAt)} chunks of each choice`);
check(got.finishes.every((f) => f === "length") && JSON.stringify(got.texts) === JSON.stringify(ref.texts),
      "every choice continued with the same text as the undisturbed run");
process.exit(failed ? 1 : 0);
