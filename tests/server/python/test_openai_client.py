"""`saguaro serve` driven by OpenAI's own Python client (the `openai` package), against the chat
fixture model (tests/fixtures/chat/model: random weights, the real LFM2 chat template).

Greedy answers must equal `saguaro complete` on the same request; streaming, tools in the
history, completions, model listing, the API key and errors go through the client's own parsing.
Run by scripts/test-server.sh (which makes the venv): SAGUARO_BIN is the `saguaro` binary,
SAGUARO_ROOT the source tree. Only 127.0.0.1 is contacted.
"""

import json
import os
import re
import subprocess
import threading
import unittest

import openai
from openai import OpenAI

ROOT = os.environ["SAGUARO_ROOT"]
BIN = os.environ["SAGUARO_BIN"]
MODEL = os.path.join(ROOT, "tests", "fixtures", "chat", "model")
KEY = "python-test-key"

with open(os.path.join(ROOT, "tests", "fixtures", "chat", "reference.json")) as f:
    GENERATIONS = json.load(f)["generations"]

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

# A conversation with a tool call and its result in the history (OpenAI's shapes: arguments as a
# JSON string, the tool message answering the call's id).
TOOL_HISTORY = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21}"},
]


def cli_complete(request):
    """The reference: `saguaro complete` on an engine request."""
    out = subprocess.run([BIN, "complete", "--model", MODEL], input=json.dumps(request),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def finish_reason(engine):
    return {"tool_calls": "tool_calls", "length": "length", "context_full": "length"}.get(engine, "stop")


class Server:
    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [BIN, "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", "0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("saguaro serve exited before listening")
        # Drain stderr so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class OpenAIClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "2", "--api-key", KEY)
        cls.client = OpenAI(base_url=cls.server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def chat_args(self, engine):
        opts = engine["options"]
        args = dict(model="fixture", messages=engine["messages"], temperature=0, max_tokens=opts["max_tokens"],
                    extra_body={"repetition_penalty": opts["repetition_penalty"]})
        if "tools" in engine:
            args["tools"] = engine["tools"]
        return args

    def test_chat_matches_the_cli(self):
        for g in GENERATIONS:
            want = cli_complete(g["request"])
            r = self.client.chat.completions.create(**self.chat_args(g["request"]))
            self.assertEqual(r.object, "chat.completion")
            self.assertEqual(r.choices[0].message.role, "assistant")
            self.assertEqual(r.choices[0].message.content, want["response"])
            self.assertEqual(r.choices[0].finish_reason, finish_reason(want["finish_reason"]))
            self.assertEqual(r.usage.completion_tokens, want["decode_tokens"])
            self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
            # Saguaro's extension object rides along as an extra field.
            self.assertEqual(r.model_extra["saguaro"]["finish_reason"], want["finish_reason"])

    def test_chat_streams_the_same_text(self):
        for g in GENERATIONS:
            want = cli_complete(g["request"])
            stream = self.client.chat.completions.create(**self.chat_args(g["request"]), stream=True,
                                                         stream_options={"include_usage": True})
            chunks = list(stream)
            self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            self.assertEqual(text, want["response"])
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            self.assertEqual(finishes, [finish_reason(want["finish_reason"])])
            self.assertEqual(chunks[-1].choices, [])
            self.assertEqual(chunks[-1].usage.completion_tokens, want["decode_tokens"])

    def test_tool_history_and_tools(self):
        engine = {"messages": TOOL_HISTORY, "tools": TOOLS, "options": {"temperature": 0, "max_tokens": 24}}
        want = cli_complete(engine)
        r = self.client.chat.completions.create(model="fixture", messages=TOOL_HISTORY, tools=TOOLS,
                                                tool_choice="auto", temperature=0, max_tokens=24)
        self.assertEqual(r.choices[0].message.content or "", want["response"])
        calls = r.choices[0].message.tool_calls or []
        self.assertEqual([c.function.name for c in calls], [c["name"] for c in want["function_calls"]])
        self.assertEqual([json.loads(c.function.arguments) for c in calls], [c["arguments"] for c in want["function_calls"]])
        stream = self.client.chat.completions.create(model="fixture", messages=TOOL_HISTORY, tools=TOOLS,
                                                     temperature=0, max_tokens=24, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        self.assertEqual(text, want["response"])

    def test_forced_tool_call(self):
        """A named tool_choice yields a parsed call with arguments valid against its parameters
        (constrained decoding in the engine; /v1/models advertises it)."""
        caps = self.client.models.list().data[0].model_extra["saguaro"]
        self.assertTrue(caps["tool_choice"])
        # A bounded city: random weights would otherwise write one string until max_tokens.
        tools = json.loads(json.dumps(TOOLS))
        tools[0]["function"]["parameters"]["properties"]["city"]["maxLength"] = 12
        r = self.client.chat.completions.create(
            model="fixture", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools,
            tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0, max_tokens=160)
        self.assertEqual(r.choices[0].finish_reason, "tool_calls")
        call = r.choices[0].message.tool_calls[0]
        self.assertEqual(call.function.name, "get_weather")
        self.assertIsInstance(json.loads(call.function.arguments)["city"], str)

    def test_structured_output(self):
        """response_format json_schema, through the client's own `parse` helper: the content is
        JSON with the schema's required, typed fields (streamed the same as not)."""
        caps = self.client.models.list().data[0].model_extra["saguaro"]
        self.assertTrue(caps["json_schema"])
        schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                   "sunny": {"type": "boolean"}},
                  "required": ["city", "sunny"], "additionalProperties": False}
        fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}}
        args = dict(model="fixture", messages=[{"role": "user", "content": "Weather in Paris?"}],
                    response_format=fmt, temperature=0, max_tokens=160)
        r = self.client.chat.completions.create(**args)
        self.assertEqual(r.choices[0].finish_reason, "stop", r)
        doc = json.loads(r.choices[0].message.content)
        self.assertEqual(set(doc), {"city", "sunny"})
        self.assertIsInstance(doc["city"], str)
        self.assertIsInstance(doc["sunny"], bool)
        stream = self.client.chat.completions.create(**args, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        self.assertEqual(text, r.choices[0].message.content)

    def test_completions(self):
        g = GENERATIONS[0]
        want = cli_complete(g["request"])
        prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n")
        r = self.client.completions.create(model="fixture", prompt=prompt, temperature=0, max_tokens=40,
                                           extra_body={"repetition_penalty": 1.0})
        self.assertEqual(r.choices[0].text, want["response"])
        stream = self.client.completions.create(model="fixture", prompt=prompt, temperature=0, max_tokens=40,
                                                extra_body={"repetition_penalty": 1.0}, stream=True)
        self.assertEqual("".join(c.choices[0].text for c in stream), want["response"])

    def test_models(self):
        models = self.client.models.list().data
        self.assertEqual([m.id for m in models], ["model"])

    def test_errors(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.chat.completions.create(model="fixture", messages=[{"role": "user", "content": "hi"}], n=2)
        self.assertEqual(e.exception.status_code, 400)
        self.assertEqual(e.exception.body["param"], "n")
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model="fixture", messages=[])
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model="fixture", messages=[{"role": "user", "content": "hi"}], temperature=-1)
        bad_key = OpenAI(base_url=self.server.url + "/v1", api_key="wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad_key.models.list()


if __name__ == "__main__":
    unittest.main()
