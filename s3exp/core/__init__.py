"""The kernel: the error tree, name rules, clocks and the process's timer thread.

Imports nothing from the rest of s3exp; everything else may import it.
"""
