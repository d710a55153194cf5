#!/usr/bin/env python
"""Prints the option tables of every section the plugin checks (docs/options.md is this)."""
from mzsr_plugin.option_schema import SECTIONS, markdown_table

if __name__ == '__main__':
    print('\n\n'.join(markdown_table(section) for section in SECTIONS))
