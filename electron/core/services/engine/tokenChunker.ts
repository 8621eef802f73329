/**
 * Groups streamed text into chunks of `size` tokens (contract §3.2 `stream_chunk_size`, default 4),
 * so the REST SSE stream and gRPC StreamPredict send the same chunks.
 */
export class TokenChunker {
  private text = '';
  private tokens = 0;

  constructor(
    private readonly size: number,
    private readonly emit: (text: string) => void,
  ) {}

  push(text: string, tokens: number): void {
    this.text += text;
    this.tokens += tokens;
    if (this.tokens >= this.size) this.emit(this.take());
  }

  /** Returns what is buffered (possibly empty) and starts over. */
  take(): string {
    const out = this.text;
    this.text = '';
    this.tokens = 0;
    return out;
  }
}
