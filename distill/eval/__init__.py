"""Stage 4: evaluate student vs original base vs teacher on reasoning benchmarks.

    distill eval --size 7b --teacher r1                  # distill.eval.run.run
    from distill.eval.metrics import pass_at_k, summarize  # pass@1 ± stderr, pass@k, cons@k
    from distill.eval.callback import EvalCallback         # scores during training

Modules: config (EvalConfig), metrics, results (resumable per-sample results scored by
distill.verify), report (report.json / .md / .png), run (the stage), callback. Importing this
package loads none of them.
"""
