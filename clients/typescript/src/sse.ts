// A Server-Sent Events parser (the WHATWG "event stream" format) over a fetch body. The server
// sends `id:`, `event:` and `data:` lines; comments, CRLF line ends and multi-line data are handled
// too, so a proxy that rewrites the stream does not break it.

export interface SseMessage {
  /** The `id:` field; "" when the message had none. */
  id: string;
  /** The `event:` field; "message" when the message had none. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
}

export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder(); // streaming: a UTF-8 sequence may span two chunks
  let buffer = "";
  let id = "", event = "", data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return; // an unterminated last message is dropped, as the format says
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        if (end < 0) break;
        // A lone \r at the very end may be the first half of \r\n: wait for the next chunk.
        if (buffer[end] === "\r" && end === buffer.length - 1) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (data.length > 0) yield { id, event: event || "message", data: data.join("\n") };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "event") event = value;
        else if (field === "id" && !value.includes("\0")) id = value;
      }
    }
  } finally {
    // Stops the download when the caller leaves early (break, throw); a no-op after the end.
    await reader.cancel().catch(() => {});
  }
}
