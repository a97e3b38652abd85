"""The PixelRNNs' recurrences on this machine: train-step throughput of `row_lstm_mnist`
and `diagonal_bilstm_mnist` with the state-to-state step written as one matrix product of
shifted states (``state_step=matmul``) or as XLA's convolution (``conv``), each scan
unrolled 1, 2, 4 or 7 iterations per loop trip. XLA:CPU compiles convolution gradients
inside loops slowly, so both forms are measured and the faster one is the configs'
default.

  python -m benchmarks.pixelrnn_recurrence [--configs=row_lstm_mnist] [--unrolls=1,4]
      [--seconds=5 --windows=3]

A config's variants are built and compiled first, then timed window by window in turn
(`benchmarks.throughput.measure_in_turn`: A B C A B C, so the machine's drift hits each
alike), at the config's batch on a fixed batch in memory. Writes ``--out`` (JSON with the
machine) and prints the rows.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import machine, throughput  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RNN_CONFIGS = flags.DEFINE_list("rnn_configs", ["row_lstm_mnist", "diagonal_bilstm_mnist"],
                                 "PixelRNN configs to time.")
_UNROLLS = flags.DEFINE_list("unrolls", ["1", "2", "4", "7"], "Scan unroll factors.")
_STEPS = flags.DEFINE_list("state_steps", ["matmul", "conv"], "State-to-state forms.")
_RNN_OUT = flags.DEFINE_string("rnn_out", os.path.join(ROOT, "benchmarks", "results",
                                                       "pixelrnn_recurrence.json"), "Result file.")


def main(argv):
    del argv
    rows = []
    for name in _RNN_CONFIGS.value:
        variants = [{"step_options": {"state_step": s, "unroll": int(u)}}
                    for s in _STEPS.value for u in _UNROLLS.value]
        for row in throughput.measure_in_turn(name, None, variants):
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"machine": machine.describe(), "cpu": machine.cpu(),
              "command": "python -m benchmarks.pixelrnn_recurrence " + " ".join(sys.argv[1:]),
              "rows": rows}
    with open(_RNN_OUT.value, "w") as out:
        json.dump(result, out, indent=1)


if __name__ == "__main__":
    app.run(main)
