// The official OpenAI Node SDK (npm openai@5, no dependencies) pointed at `mforge serve`:
// it must work unchanged. Usage: node openai_client.mjs SDK_DIR BASE_URL API_KEY MODEL
import { createRequire } from "module";
const require = createRequire(import.meta.url);
const [sdkDir, baseURL, apiKey, model] = process.argv.slice(2);
const { OpenAI } = require(sdkDir);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
let checks = 0, failed = 0;
const check = (ok, what) => { checks++; if (!ok) { failed++; console.error("FAIL: " + what); } };

const models = await client.models.list();
check(models.data.some((m) => m.id === model), "models.list names " + model);

const prompt = "The whale";
const c = await client.completions.create({ model, prompt, max_tokens: 8, temperature: 0, seed: 1 });
check(c.object === "text_completion" && c.model === model, "completion object and model id");
check(typeof c.choices[0].text === "string" && c.choices[0].index === 0, "choice 0 text");
check(c.usage.prompt_tokens === 2 && c.usage.completion_tokens >= 1 && c.usage.completion_tokens <= 8, "usage");

let streamed = "", chunks = 0, finish = null;
const stream = await client.completions.create({ model, prompt, max_tokens: 8, temperature: 0, seed: 1, stream: true });
for await (const chunk of stream) {
  chunks++;
  if (chunk.choices.length) {
    streamed += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
}
check(streamed === c.choices[0].text, `streamed text equals the whole one ('${streamed}' vs '${c.choices[0].text}')`);
check(chunks >= 2 && (finish === "length" || finish === "stop"), "stream events and finish_reason");

const multi = await client.completions.create({ model, prompt: ["one", "two"], n: 2, max_tokens: 3 });
check(multi.choices.length === 4 && multi.choices.map((x) => x.index).join() === "0,1,2,3", "prompt array x n choices");

const echo = await client.completions.create({ model, prompt, max_tokens: 2, echo: true });
check(echo.choices[0].text.startsWith(prompt), "echo");

try {
  await client.completions.create({ model: "no-such-model", prompt, max_tokens: 2 });
  check(false, "unknown model must fail");
} catch (e) {
  check(e instanceof OpenAI.NotFoundError && e.status === 404, "unknown model: NotFoundError 404");
}
try {
  await client.completions.create({ model, prompt, max_tokens: -1 });
  check(false, "negative max_tokens must fail");
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.status === 400 && /max_tokens/.test(e.message), "bad max_tokens: BadRequestError naming it");
}
const wrong = new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 });
try {
  await wrong.models.list();
  check(false, "a wrong key must fail");
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError && e.status === 401, "wrong key: AuthenticationError 401");
}
console.log(`openai_client: ${checks} checks, ${failed} failed`);
process.exit(failed ? 1 : 0);
