"""`python -m cogen.evaluate ...`: see cogen.evaluate."""
from . import main

if __name__ == "__main__":
    main()
