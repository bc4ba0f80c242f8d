"""Entry point `pulumi up` runs; everything else lives in components/."""

from components.program import main

main()
