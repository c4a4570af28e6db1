"""TODO"""
from search.output.lines import *  # noqa
