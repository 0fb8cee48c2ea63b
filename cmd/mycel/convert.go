package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
)

func newConvertCmd() *cobra.Command {
	var out, dtype string
	cmd := &cobra.Command{
		Use:   "convert DIR -o FILE.gguf [--dtype q8_0]",
		Short: "Convert a Hugging Face model directory (safetensors) to a GGUF file",
		Long: `Convert a model as Hugging Face publishes it, a directory with config.json,
the weights as safetensors (model.safetensors, or shards listed in
model.safetensors.index.json) and tokenizer.json, to one GGUF file that
every mycel command runs, imports and serves. Llama (2, 3 and 3.x with its
rope scaling), Mistral, Mixtral, Qwen 2 / 2.5, Qwen 3, Qwen 3 MoE, Phi-3,
Gemma 2 and Gemma 3 (its text model) are known; the
weights keep their type (F32, F16 or BF16), or with --dtype become f16, bf16,
q8_0 or q4_0 on the way (as mycel models import --dtype makes them). No
Python needed. A directory
can also be given wherever a model file is taken (mycel run -m DIR): it is
converted each time (through a temporary file, removed at once).`,
		Example: `  mycel models convert ./Qwen2.5-0.5B-Instruct -o qwen2.5-0.5b.gguf
  mycel models convert ./Llama-3.2-1B-Instruct -o llama-3.2-1b-q8.gguf --dtype q8_0
  mycel run -m qwen2.5-0.5b.gguf "The capital of France is"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("name the output file with -o")
			}
			convert := checkpoints.ConvertHF
			if dtype != "" {
				dt, err := kernels.ParseDType(dtype)
				if err != nil {
					return fmt.Errorf("--dtype: %w", err)
				}
				convert = func(dir string, w io.Writer) error { return checkpoints.ConvertHFTo(dir, w, dt) }
			}
			err := writeFileAtomic(out, func(w io.Writer) error {
				bw := bufio.NewWriterSize(w, 1<<20)
				if err := convert(args[0], bw); err != nil {
					return err
				}
				return bw.Flush()
			})
			if err != nil {
				return err
			}
			m, err := checkpoints.Load(out)
			if err != nil {
				return fmt.Errorf("the file written does not load: %w", err)
			}
			defer m.Close()
			c := m.Weights.Config
			fi, _ := os.Stat(out)
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %s, %d layers, width %d, vocabulary %d, %.1f MB\n",
				out, c.Arch, c.Layers, c.Dim, c.Vocab, float64(fi.Size())/1e6)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file (.gguf)")
	cmd.Flags().StringVar(&dtype, "dtype", "", "the weight matrices' type in the file: f32, f16, bf16, q8_0 or q4_0 (default: as in the directory)")
	return cmd
}
