package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
)

func newModelsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Share models as content-addressed blocks; create and inspect model files",
	}
	cmd.AddCommand(newModelsImportCmd(g), newModelsPullCmd(g), newModelsLsCmd(g), newModelsInspectCmd(g),
		newModelsExportCmd(g), newModelsRmCmd(g), newSynthCmd(), newConvertCmd())
	return cmd
}

func newSynthCmd() *cobra.Command {
	var shape, dtype, outPath string
	var seed uint64
	cmd := &cobra.Command{
		Use:   "synth --shape SHAPE --dtype DTYPE -o FILE.gguf",
		Short: "Write a random-weight model of a named shape (for benchmarks and tests)",
		Long: "Write a GGUF model with seeded random weights and a synthetic vocabulary.\n" +
			"The same shape, dtype and seed always give the same file. Shapes: " + strings.Join(checkpoints.SynthShapes(), ", ") + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dt, err := kernels.ParseDType(dtype)
			if err != nil {
				return err
			}
			if outPath == "" {
				return fmt.Errorf("name the output file with -o")
			}
			if err := checkpoints.SynthFile(outPath, shape, dt, seed); err != nil {
				return err
			}
			fi, _ := os.Stat(outPath)
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %s, %s, seed %d, %.1f MB\n", outPath, shape, dt, seed, float64(fi.Size())/1e6)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&shape, "shape", "stories15M", "model shape")
	fl.StringVar(&dtype, "dtype", "f32", "weight type: f32, f16, bf16, q8_0 or q4_0")
	fl.StringVarP(&outPath, "output", "o", "", "output file (.gguf)")
	fl.Uint64Var(&seed, "seed", 1, "random seed")
	return cmd
}
