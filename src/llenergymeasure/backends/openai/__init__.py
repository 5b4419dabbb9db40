"""The endpoint backend: any OpenAI-compatible server (vLLM, SGLang, TGI, trtllm-serve) over HTTP.

llem either attaches to a server that already runs (``openai.base_url``) or starts one as a local
process (``openai.launch``); requests are streamed and timed on the client (``client.py``, over
the standard-library HTTP of ``http.py``); the engine's own state comes from its Prometheus
``/metrics`` page (``prometheus.py``, ``telemetry.py``). Nothing here imports an engine.
"""
