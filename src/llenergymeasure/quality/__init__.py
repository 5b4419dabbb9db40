"""Quality beside energy: lm-evaluation-harness tasks on the engine instance llem measured.

``phase.py`` is the harness's one call (after the measured window); ``tasks.py`` resolves task
names and local task YAMLs (and refuses a hub task with no hub); ``runner.py`` evaluates each task
in its own energy window; ``adapter.py`` holds what every backend's lm-eval model shares and the
generation-only adapter over the backend protocol. A backend that scores log-likelihoods has its
own adapter in its package (``backends/<name>/quality.py``). lm-eval is imported only here,
never when ``llenergymeasure`` is imported. See docs/quality.md.
"""
