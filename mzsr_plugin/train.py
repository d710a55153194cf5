"""``python -m mzsr_plugin.train -opt OPTIONS.yml [--auto_resume] [--launcher pytorch]`` (console: ``mzsr-train``).

BasicSR's own training pipeline with the plugin registered; experiments, logs and TensorBoard files go under the
current directory (``experiments/<name>``, ``tb_logger/<name>``), as when running ``basicsr/train.py`` from a
BasicSR checkout.
"""
import os

import mzsr_plugin  # noqa: F401  (registers the plugin and applies the basicsr fixes)
from basicsr.train import train_pipeline


def main():
    train_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
