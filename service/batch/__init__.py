r"""The offline \`score\` command: a CSV file scored block by block in worker processes, with the
API's checks and answers."""
