// Produces records read from standard input into Kafka, for `make bench`.
//
// kafka-python spends about 100-250 us of CPU per record here, so producing
// 10,000 records/s from Python would take most of this 2-core machine from the
// job being measured; Kafka's own Java client needs a few microseconds. The
// bench paces the lines it writes; this program only sends them, in order.
//
// Input, one record a line: topic TAB key TAB value, key and value in base64
// (the exact bytes to send), "-" for a null key. It prints "ready" once its
// client exists; at end of input it flushes and prints "sent N failed F", then
// the first error if any; exit status 1 on any failure.
//
// Run in source-file mode: java -cp <Kafka classpath> LineProducer.java BOOTSTRAP_SERVERS

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class LineProducer {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        config.put("bootstrap.servers", args[0]);
        config.put("acks", "all"); // as connectors.kafka.replay
        config.put("linger.ms", "5");
        config.put("key.serializer", ByteArraySerializer.class.getName());
        config.put("value.serializer", ByteArraySerializer.class.getName());
        Base64.Decoder base64 = Base64.getDecoder();
        AtomicLong failed = new AtomicLong();
        AtomicReference<Exception> firstError = new AtomicReference<>();
        long sent = 0;
        BufferedReader lines = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII), 1 << 20);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            System.out.println("ready");
            System.out.flush();
            for (String line = lines.readLine(); line != null; line = lines.readLine()) {
                String[] fields = line.split("\t", 3);
                byte[] key = fields[1].equals("-") ? null : base64.decode(fields[1]);
                producer.send(new ProducerRecord<>(fields[0], key, base64.decode(fields[2])), (metadata, error) -> {
                    if (error != null) {
                        failed.incrementAndGet();
                        firstError.compareAndSet(null, error);
                    }
                });
                sent++;
            }
            producer.flush();
        }
        System.out.println("sent " + sent + " failed " + failed.get());
        if (firstError.get() != null) {
            System.out.println(firstError.get());
            System.exit(1);
        }
    }
}
