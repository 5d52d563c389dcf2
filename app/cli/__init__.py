"""The face: the ``riskray`` command line and the demo. Each command parses, calls operations or a lifecycle
package's stage function (imported inside the command, so ``riskray --help`` stays instant), and prints."""
