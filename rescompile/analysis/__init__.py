"""Analysis of the IR: parameters and multiply-adds, the paper check, tables and diffs, memory."""
