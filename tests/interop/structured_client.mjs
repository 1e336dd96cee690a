// Structured outputs through the official `openai` npm client: json_schema
// and json_object on chat and completions, streamed and not, on the
// built-in random-weight model. Every output that ends must parse and
// validate against its schema (a small validator below, for the keywords
// Baton supports); a streamed run equals the whole one; unsupported
// keywords are a 400 naming them. Usage: node structured_client.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused-on-loopback", maxRetries: 0, timeout: 120000 });
let failed = 0;
let n = 0;

function check(cond, what) {
  n++;
  console.log(`${cond ? "ok" : "not ok"} ${n} - ${what}`);
  if (!cond) failed++;
}

function typeOk(t, v) {
  switch (t) {
    case "string": return typeof v === "string";
    case "integer": return Number.isInteger(v);
    case "number": return typeof v === "number";
    case "boolean": return typeof v === "boolean";
    case "null": return v === null;
    case "object": return v !== null && typeof v === "object" && !Array.isArray(v);
    case "array": return Array.isArray(v);
  }
  return false;
}

// null when v validates against s, else where it does not
function invalid(s, v, at = "/") {
  if (s === true) return null;
  const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  if ("const" in s && !eq(s.const, v)) return `${at}: not the const`;
  if (s.enum && !s.enum.some((e) => eq(e, v))) return `${at}: not in the enum`;
  if (s.anyOf && s.anyOf.every((a) => invalid(a, v, at) !== null)) return `${at}: no anyOf branch`;
  if (s.type) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    if (!types.some((t) => typeOk(t, v))) return `${at}: not of type ${types}`;
  }
  if (typeof v === "number") {
    if ("minimum" in s && v < s.minimum) return `${at}: below minimum`;
    if ("maximum" in s && v > s.maximum) return `${at}: above maximum`;
    if ("exclusiveMinimum" in s && v <= s.exclusiveMinimum) return `${at}: at exclusiveMinimum`;
    if ("exclusiveMaximum" in s && v >= s.exclusiveMaximum) return `${at}: at exclusiveMaximum`;
  }
  if (typeof v === "string") {
    const len = [...v].length;
    if ("pattern" in s && !new RegExp(s.pattern, "u").test(v)) return `${at}: does not match the pattern`;
    if ("minLength" in s && len < s.minLength) return `${at}: shorter than minLength`;
    if ("maxLength" in s && len > s.maxLength) return `${at}: longer than maxLength`;
  }
  if (Array.isArray(v)) {
    if ("minItems" in s && v.length < s.minItems) return `${at}: fewer than minItems`;
    if ("maxItems" in s && v.length > s.maxItems) return `${at}: more than maxItems`;
    for (let i = 0; s.items && i < v.length; i++) {
      const e = invalid(s.items, v[i], `${at}${i}/`);
      if (e) return e;
    }
  }
  if (typeOk("object", v)) {
    for (const r of s.required ?? []) if (!(r in v)) return `${at}: lacks ${r}`;
    for (const [k, x] of Object.entries(v)) {
      const ps = s.properties?.[k];
      if (ps) {
        const e = invalid(ps, x, `${at}${k}/`);
        if (e) return e;
      } else if (s.additionalProperties === false) {
        return `${at}: extra property ${k}`;
      } else if (typeof s.additionalProperties === "object") {
        const e = invalid(s.additionalProperties, x, `${at}${k}/`);
        if (e) return e;
      }
    }
  }
  return null;
}

function parsesAndValidates(text, schema) {
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `does not parse: ${e.message}`;
  }
  return invalid(schema, v);
}

const person = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 24 },
    code: { type: "string", pattern: "^[A-Z]{3}-\\d{2,4}$" },
    age: { type: "integer", minimum: 0, maximum: 120 },
    email: { type: ["string", "null"], maxLength: 30 },
    tags: { type: "array", items: { enum: ["red", "green", "blue"] }, minItems: 1, maxItems: 3 },
    address: {
      type: "object",
      properties: { city: { type: "string", minLength: 1, maxLength: 16 }, zip: { type: "integer" } },
      required: ["city"], additionalProperties: false,
    },
  },
  required: ["name", "code", "age", "tags", "address"],
  additionalProperties: false,
};

const reading = {
  type: "object",
  properties: {
    kind: { const: "reading" },
    value: { type: "number", exclusiveMinimum: -40, maximum: 60.5 },
    unit: { anyOf: [{ enum: ["C", "F"] }, { type: "null" }] },
    ok: { type: "boolean" },
  },
  required: ["kind", "value", "unit", "ok"],
};

const messages = [{ role: "system", content: "Answer in JSON." }, { role: "user", content: "A person, please." }];

// chat, json_schema: whole and streamed, several seeds
let allStop = true;
for (const seed of [1, 2, 3, 4, 5]) {
  const rf = { type: "json_schema", json_schema: { name: "person", schema: person, strict: true } };
  const whole = await client.chat.completions.create({ model, messages, max_tokens: 400, seed, response_format: rf });
  const text = whole.choices[0].message.content;
  const why = parsesAndValidates(text, person);
  allStop &&= whole.choices[0].finish_reason === "stop";
  check(whole.choices[0].finish_reason === "stop" && why === null,
        `chat json_schema seed ${seed}: ${whole.choices[0].finish_reason}, ${why ?? "valid"}: ${text.slice(0, 70)}`);
  let streamed = "";
  const st = await client.chat.completions.create({ model, messages, max_tokens: 400, seed, response_format: rf, stream: true });
  for await (const chunk of st) streamed += chunk.choices[0]?.delta?.content ?? "";
  check(streamed === text, `chat json_schema seed ${seed}: the stream equals the whole response`);
}

// completions, json_schema at temperature 0.7 and 0
for (const [seed, temperature] of [[11, 0.7], [12, 0.7], [13, 0]]) {
  const rf = { type: "json_schema", json_schema: { name: "reading", schema: reading } };
  const whole = await client.completions.create({ model, prompt: "Sensor:", max_tokens: 300, seed, temperature,
                                                  response_format: rf });
  const text = whole.choices[0].text;
  const why = parsesAndValidates(text, reading);
  check(whole.choices[0].finish_reason === "stop" && why === null,
        `completions json_schema seed ${seed} T=${temperature}: ${why ?? "valid"}: ${text.slice(0, 70)}`);
  let streamed = "";
  const st = await client.completions.create({ model, prompt: "Sensor:", max_tokens: 300, seed, temperature,
                                               response_format: rf, stream: true });
  for await (const chunk of st) streamed += chunk.choices[0]?.text ?? "";
  check(streamed === text, `completions json_schema seed ${seed}: the stream equals the whole response`);
}

// json_object: any object. A random model writes long keys, so some runs
// reach max_tokens; every run that ends is an object that parses.
let ended = 0;
for (const seed of [2, 3]) {
  const whole = await client.completions.create({ model, prompt: "x", max_tokens: 1900, seed,
                                                  response_format: { type: "json_object" } });
  const text = whole.choices[0].text;
  if (whole.choices[0].finish_reason === "stop") {
    ended++;
    let v = null;
    try { v = JSON.parse(text); } catch { /* checked below */ }
    check(typeOk("object", v), `json_object seed ${seed}: an object that parses (${text.length} bytes)`);
  }
}
check(ended >= 1, `json_object: ${ended} of 2 runs ended within max_tokens`);

// chat json_object streamed, short: text (cut by length or complete) starts an object
let jo = "";
const jos = await client.chat.completions.create({ model, messages, max_tokens: 16, seed: 9, stream: true,
                                                   response_format: { type: "json_object" } });
for await (const chunk of jos) jo += chunk.choices[0]?.delta?.content ?? "";
check(jo.startsWith("{\""), `chat json_object streamed starts an object: ${jo.slice(0, 40)}`);

// refusals: 400 naming the keyword, in OpenAI's error shape
async function expect400(body, needle, what) {
  try {
    await client.chat.completions.create({ model, messages, max_tokens: 4, ...body });
    check(false, `${what}: no error`);
  } catch (e) {
    check(e instanceof OpenAI.APIError && e.status === 400 && e.message.includes(needle) &&
          e.param === "response_format", `${what}: HTTP ${e.status} ${e.message} (param ${e.param})`);
  }
}
await expect400({ response_format: { type: "json_schema", json_schema: { name: "x", schema:
                  { type: "object", properties: { id: { type: "string", pattern: "^(?!x)[a-z]+$" } } } } } },
                "'pattern': the pattern uses lookaround or named groups at /properties/id",
                "a pattern outside the supported subset");
await expect400({ response_format: { type: "json_schema", json_schema: { name: "x", schema:
                  { type: "object", properties: { id: { type: "string", format: "uuid" } } } } } },
                "'format' at /properties/id", "unsupported keyword format");
await expect400({ response_format: { type: "json_schema", json_schema: { name: "x", schema: { $ref: "#/x" } } } },
                "'$ref'", "unsupported keyword $ref");
await expect400({ response_format: { type: "json_schema", json_schema: { name: "x" } } },
                "json_schema.schema", "json_schema without a schema");
await expect400({ response_format: { type: "yaml" } }, "'type' must be", "unknown response_format type");

// the cluster still serves
const after = await client.completions.create({ model, prompt: "still here", max_tokens: 4 });
check(after.choices[0].text.length > 0, "the cluster serves after the refusals");

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
