"""Research report: a reasoning model plans sub-questions, mini workers answer them from a local
corpus with tools, a writer composes a cited report, and what a run learns is kept for the next.

Run it with `python examples/research_report/main.py "LFP vs NMC for home storage"`; see README.md.
"""
