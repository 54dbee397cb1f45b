// The request/response schema of every Saguaro surface (engine/src/api.rs; docs/design.md
// §API). Field names are the JSON's (snake_case), as the CLI reads and prints them.

/** One chat message. Other fields (`tool_call_id`, `name`, `thinking`, ...) reach the template as they are. */
export interface Message {
  role: 'system' | 'user' | 'assistant' | 'tool';
  /** A string, a list of content parts, or absent/null (an assistant turn that only calls tools). */
  content?: string | Array<string | Record<string, unknown>> | null;
  /** Tool calls of an assistant turn: `{type: 'function', function: {name, arguments}}` or `{name, arguments}`. */
  tool_calls?: unknown[];
  [extra: string]: unknown;
}

/** A named set of sampling values (`options.preset`): `'lfm2'` = temperature 0.3, min_p 0.15,
 * repetition_penalty 1.05 (LiquidAI's recommended LFM2 sampling); `'lfm2.5'` = temperature 0.1,
 * top_k 50, top_p 0.1, repetition_penalty 1.05. Each sets all five sampling values. */
export type SamplingPreset = 'lfm2' | 'lfm2.5';

/**
 * Generation options. The engine fills in missing ones, by the same rule on every surface
 * (README "Request options and their defaults"; engine/src/api.rs `Options::resolve`): a missing
 * sampling value comes from `preset` if given, else the model's generation_config.json, else the
 * neutral value (temperature 1, top_k 0, top_p 1, min_p 0, repetition_penalty 1).
 * `temperature: 0` in the request is pure argmax: no repetition penalty unless the request sets
 * `repetition_penalty` itself. This package passes the options through unchanged.
 */
export interface Options {
  /** Sampling values to use instead of the model's generation_config.json; the options below override it one by one. */
  preset?: SamplingPreset;
  /** 0 = greedy (argmax). Default: preset, generation_config.json (`do_sample: false` = 0), else 1. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off. Default: preset, generation_config.json, else 0. */
  top_k?: number;
  /** Nucleus sampling in (0, 1]; 1 = off. Default: preset, generation_config.json, else 1. */
  top_p?: number;
  /** In [0, 1]; 0 = off. Default: preset, generation_config.json, else 0. */
  min_p?: number;
  /** > 0; 1 = off. Default: 1 when the request sets `temperature: 0`; else preset, generation_config.json, else 1. */
  repetition_penalty?: number;
  /** Most new tokens (the end-of-turn token counts). Default: generation_config.json `max_new_tokens`, else 512. */
  max_tokens?: number;
  stop_sequences?: string[];
  include_stop_sequences?: boolean;
  /** Seed of the portable sampler (a u64; a bigint above 2^53; default 0): the same seed gives the same tokens on every host. */
  seed?: number | bigint;
  /** `cloud_handoff` threshold on the rolling confidence (default 0.7). */
  confidence_threshold?: number;
  /**
   * A JSON Schema object: `response` is then JSON valid against it, written compactly (`", "` and `": "`
   * separators). Token masks are applied before sampling; `finish_reason` is `stop` once the JSON is whole,
   * `length` if `max_tokens` cut it. Unsupported keywords (`not`, `if`, `uniqueItems`, ...) fail the request
   * with code `input`.
   */
  json_schema?: Record<string, unknown>;
  [extra: string]: unknown;
}

/** A named function to call: `{type: 'function', function: {name}}`. */
export interface ToolChoiceFunction {
  type: 'function';
  function: { name: string };
}

/**
 * OpenAI's `tool_choice`: `'auto'` (default), `'none'` (no tool call can start), `'required'` (one or more
 * calls of declared tools) or a named function (exactly one call of it). Forced calls have arguments valid
 * against the tool's `parameters`; they come back in `function_calls` with `finish_reason: 'tool_calls'`.
 */
export type ToolChoice = 'auto' | 'none' | 'required' | ToolChoiceFunction;

/** A completion request. */
export interface CompletionRequest {
  messages: Message[];
  /** OpenAI-style function schemas (`{type: 'function', function: {name, description, parameters}}`) or bare `{name, ...}`. */
  tools?: unknown[];
  tool_choice?: ToolChoice;
  options?: Options;
}

export type FinishReason = 'stop' | 'tool_calls' | 'length' | 'stop_sequence' | 'context_full' | 'cancelled';

/** A tool call the model made, with typed argument values. */
export interface FunctionCall {
  name: string;
  arguments: Record<string, unknown>;
}

/** A completion response: the JSON `saguaro complete` prints. */
export interface CompletionResponse {
  success: boolean;
  error: string | null;
  /** The engine error's code when `success` is false. */
  error_code?: string;
  cloud_handoff: boolean;
  /** The assistant's text (tool calls removed): the concatenation of the token events' text. */
  response: string;
  function_calls: FunctionCall[];
  /** Tool calls that could not be parsed or name an undeclared tool. */
  tool_call_errors?: string[];
  /** 1 - mean normalised entropy of the generated tokens (an f32 value). */
  confidence: number;
  finish_reason: FinishReason | null;
  time_to_first_token_ms: number;
  total_time_ms: number;
  prefill_tps: number;
  decode_tps: number;
  /** Size of the WebAssembly memory in MiB (it holds the model, the state and scratch). */
  ram_usage_mb: number;
  /** Prompt tokens run by this request (a reused prefix excluded). */
  prefill_tokens: number;
  /** Generated tokens (the end-of-turn token included). */
  decode_tokens: number;
  total_tokens: number;
  /** Prompt tokens whose state came from earlier requests of the session. */
  reused_tokens: number;
}

/** One generated token, as it is produced. */
export interface TokenEvent {
  type: 'token';
  token_id: number;
  /** Text released by this token (may be empty: held-back text, a tool call, an end-of-turn token). */
  text: string;
  /** 1 - H / ln V of this token's distribution (an f32 value). */
  confidence: number;
  /** True for the tokens of a tool call (not part of `response`). */
  in_tool_call: boolean;
}

/** A prefill chunk ran: `done` of `total` prompt tokens are in the session's state. */
export interface PrefillEvent {
  type: 'prefill';
  done: number;
  total: number;
}

/** Facts about a loaded model. */
export interface ModelInfo {
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  num_layers: number;
  max_position_embeddings: number;
  file_bytes: number;
  /** The file carries a tokenizer (chat, tokenize and detokenize work). */
  has_tokenizer: boolean;
  is_moe: boolean;
  /** The kernel tier computing (`simd128`, or `simd128+relaxed` with relaxed-simd). */
  kernels: string;
  /** Threads computing (1, or the count given to `init` where the threads build runs). */
  threads: number;
}

/** Load progress: `download` while bytes arrive from the network, `load` while they come from a local source (file, memory, cache) and once more when the model is ready. */
export interface LoadProgress {
  phase: 'download' | 'load';
  /** Bytes received so far. */
  loaded: number;
  /** The file's size, or 0 while it is unknown (a download without Content-Length). */
  total: number;
  /** True when the bytes come from the browser cache. */
  cached?: boolean;
}
