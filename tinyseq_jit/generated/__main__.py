"""python -m tinyseq_jit.generated: write the committed modules again."""

from . import main

main()
