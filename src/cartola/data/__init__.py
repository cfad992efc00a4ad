"""How data comes in: checks of the input files and the CSV ExampleGen that reads them."""
