#!/usr/bin/env python
"""The weights campaign in a source checkout: ``mzsr-campaign``'s subcommands (``mzsr_plugin/campaign/cli.py``)
plus ``report``, which regenerates the model card's, README's and docs/' generated blocks with the repository's own
tooling (``tools/campaign_report/``, not installed). A ``campaign`` of the committed state reports when it ends.

    python scripts/train_weights.py campaign --model x2_direct --minutes 150 --device cpu
    python scripts/train_weights.py report --model x2_direct [--measure]
"""
import sys
from os import path as osp

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # the checkout, for tools/

from mzsr_plugin.campaign import cli  # noqa: E402
from tools.campaign_report.measure import add_report_parser, report, run_report  # noqa: E402

COMMANDS = dict(cli.COMMANDS, report=run_report)


def main(argv=None):
    parser, sub = cli.build_parser()
    add_report_parser(sub)
    args = parser.parse_args(argv)
    COMMANDS[args.command](args)
    if args.command == 'campaign' and args.state_dir is None:
        report(args.model)  # the committed campaign moved on: its card section, curve and zoo table follow


if __name__ == '__main__':
    main()
