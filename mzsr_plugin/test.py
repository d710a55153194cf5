"""``python -m mzsr_plugin.test -opt OPTIONS.yml`` (console: ``mzsr-test``).

BasicSR's test pipeline with the plugin registered; results go under ``results/<name>`` in the current directory.
With ``model_type: MetaSRModel`` and ``val.adapt.steps`` > 0, every image is super-resolved after test-time
adaptation to its kernel.
"""
import os

import mzsr_plugin  # noqa: F401  (registers the plugin and applies the basicsr fixes)
from basicsr.test import test_pipeline


def main():
    test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
