// One images.createVariation call through the openai npm package, with the image as a
// file stream (which the SDK uploads chunked). Prints the outcome as one JSON line.
import fs from "node:fs";
import OpenAI from "openai";

const [baseURL, apiKey, imagePath, n, size, responseFormat] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

try {
  const { data, response } = await client.images
    .createVariation({
      image: fs.createReadStream(imagePath),
      n: Number(n),
      size,
      response_format: responseFormat,
      user: "node-caller-chosen-user",
    })
    .withResponse();
  console.log(JSON.stringify({ ok: true, data: data.data, created: data.created,
    requestId: response.headers.get("x-request-id") }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, status: err.status ?? null, error: err.error ?? String(err) }));
}
