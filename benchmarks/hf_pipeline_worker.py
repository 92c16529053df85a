"""The Hugging Face side of ``benchmarks/bench_hf_latency.py`` (runs in its own venv).

It needs only ``torch`` and ``transformers`` (not this project's stack), so it
imports nothing from the repository. It builds an XLM-R sequence classifier of
the given shape with random weights and the XLM-R tokenizer from a
``tokenizer.json``, then answers one JSON line per request line on stdin:

* ``{"pairs": [[premise, hypothesis], ...], "requests": n, "warmup": w,
  "offset": k, "mode": "pipeline" | "model"}`` -> ``{"latencies": [...]}``,
  seconds per single-pair call; ``pipeline`` times
  ``transformers.pipeline("text-classification")`` (tokenize, forward,
  softmax, label), ``model`` the tokenizer plus a bare forward pass under
  ``torch.inference_mode``;
* ``{"probe": [[premise, hypothesis]]}`` -> ``{"tokens": [...]}``, the packed
  length of each pair (to compare with the SavedModel's packing).

The first line written is ``{"ready": ..., "torch": ..., "threads": ...}``.
"""

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-json", required=True)
    parser.add_argument("--shape", required=True, help="JSON: the encoder's shape")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args(argv)

    import torch
    import transformers
    from transformers import (
        PreTrainedTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
        pipeline,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = json.loads(args.shape)
    config = XLMRobertaConfig(
        vocab_size=shape["vocabulary_size"],
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        hidden_size=shape["hidden_dim"],
        intermediate_size=shape["intermediate_dim"],
        max_position_embeddings=shape["max_sequence_length"] + 2,
        num_labels=3,
    )
    model = XLMRobertaForSequenceClassification(config).eval()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=args.tokenizer_json,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=args.sequence_length,
    )
    classify = pipeline(
        "text-classification", model=model, tokenizer=tokenizer, device="cpu"
    )

    def call_pipeline(p, h):
        classify({"text": p, "text_pair": h}, truncation=True)

    def call_model(p, h):
        with torch.inference_mode():
            x = tokenizer(p, h, truncation=True, return_tensors="pt")
            torch.softmax(model(**x).logits, dim=-1).numpy()

    calls = {"pipeline": call_pipeline, "model": call_model}
    ready = {
        "ready": True,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "probe" in request:
            tokens = [
                len(tokenizer(p, h, truncation=True)["input_ids"])
                for p, h in request["probe"]
            ]
            print(json.dumps({"tokens": tokens}), flush=True)
            continue
        call, pairs = calls[request["mode"]], request["pairs"]
        offset = request["offset"]
        for i in range(request["warmup"]):
            call(*pairs[(offset + i) % len(pairs)])
        latencies = []
        for i in range(request["requests"]):
            p, h = pairs[(offset + i) % len(pairs)]
            started = time.perf_counter()
            call(p, h)
            latencies.append(time.perf_counter() - started)
        print(json.dumps({"latencies": latencies}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
