// The baseline for bench_server.py: Go's http.FileServer on one directory, as the MOSN guide
// suggests for hosting the tarballs. Usage: fileserver ADDR DIR
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: fileserver ADDR DIR")
	}
	log.Fatal(http.ListenAndServe(os.Args[1], http.FileServer(http.Dir(os.Args[2]))))
}
