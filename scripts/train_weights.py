#!/usr/bin/env python
"""The weights campaign in a source checkout: ``mzsr_plugin/campaign/cli.py`` (installed as ``mzsr-campaign``)."""
from mzsr_plugin.campaign.cli import main

if __name__ == '__main__':
    main()
