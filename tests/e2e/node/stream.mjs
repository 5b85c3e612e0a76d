// One streamed images.generate or images.edit call through the openai npm package (the
// edit's image as a file stream, uploaded chunked). Prints each event's type, partial
// index and output tokens, then the outcome, as one JSON line.
import fs from "node:fs";
import OpenAI from "openai";

const [baseURL, apiKey, operation, partialImages, imagePath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const ask = { prompt: "a yellow star", stream: true, partial_images: Number(partialImages) };

try {
  const stream = operation === "edit"
    ? await client.images.edit({ ...ask, image: fs.createReadStream(imagePath) })
    : await client.images.generate(ask);
  const events = [];
  for await (const event of stream) {
    events.push({ type: event.type, index: event.partial_image_index ?? null,
      outputTokens: event.usage?.output_tokens ?? null, bytes: event.b64_json.length });
  }
  console.log(JSON.stringify({ ok: true, events }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, status: err.status ?? null, error: err.error ?? String(err) }));
}
