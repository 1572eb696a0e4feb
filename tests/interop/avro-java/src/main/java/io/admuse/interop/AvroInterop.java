package io.admuse.interop;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.concurrent.Future;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * admuse's Avro single objects as Apache Avro for Java reads and writes them.
 *
 * <pre>
 * decode SCHEMAS RECORD FILE...              one JSON line per file (GenericData's rendering)
 * produce SCHEMAS BOOTSTRAP TOPIC COUNT ID   COUNT AdEvents, the newest and oldest versions alternately, encoded by
 *                                            BinaryMessageEncoder, sent by a KafkaProducer with
 *                                            a trace-id header; prints one JSON line per event
 * </pre>
 *
 * Any failure (a fingerprint Java does not know, a broker that refuses) ends the program with
 * a stack trace and a non-zero status.
 */
public final class AvroInterop {
  private AvroInterop() {}

  public static void main(String[] args) throws Exception {
    if (args.length >= 3 && args[0].equals("decode")) {
      decode(Path.of(args[1]), args[2], List.of(args).subList(3, args.length));
    } else if (args.length == 6 && args[0].equals("produce")) {
      produce(Path.of(args[1]), args[2], args[3], Integer.parseInt(args[4]), args[5]);
    } else {
      System.err.println("usage: decode SCHEMAS RECORD FILE... | produce SCHEMAS BOOTSTRAP TOPIC COUNT ID");
      System.exit(2);
    }
  }

  /** Every RECORD.vN.avsc in the folder, by N; each parsed on its own (the names repeat). */
  static SortedMap<Integer, Schema> versions(Path dir, String record) throws IOException {
    SortedMap<Integer, Schema> out = new TreeMap<>();
    try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, record + ".v*.avsc")) {
      for (Path p : files) {
        String name = p.getFileName().toString();
        int version = Integer.parseInt(name.substring(record.length() + 2, name.length() - 5));
        out.put(version, new Schema.Parser().parse(p.toFile()));
      }
    }
    if (out.isEmpty()) {
      throw new IllegalArgumentException("no " + record + ".v*.avsc in " + dir);
    }
    return out;
  }

  static void decode(Path schemas, String record, List<String> files) throws IOException {
    SortedMap<Integer, Schema> all = versions(schemas, record);
    BinaryMessageDecoder<GenericRecord> decoder =
        new BinaryMessageDecoder<>(GenericData.get(), all.get(all.lastKey()));
    for (Schema s : all.values()) {
      decoder.addSchema(s);
    }
    for (String f : files) {
      GenericRecord value = decoder.decode(Files.readAllBytes(Path.of(f)));
      System.out.println(GenericData.get().toString(value));
    }
  }

  static GenericRecord adEvent(Schema schema, String eventId, int i) {
    GenericRecordBuilder b = new GenericRecordBuilder(schema);
    b.set("event_id", eventId);
    b.set("type", new GenericData.EnumSymbol(schema.getField("type").schema(), "click"));
    b.set("occurred_at", System.currentTimeMillis() - 1000);
    b.set("campaign_id", "spring");
    b.set("creative_id", "cr-1");
    b.set("decision_id", "d-" + eventId);
    b.set("user_id", "java-user-" + i);
    b.set("consent", Map.of("personalization", true));
    b.set("context", Map.of("country", "FR", "device", "desktop"));
    b.set("value", 1.5 * i);
    b.set("source", "java-" + schema.getName());
    return b.build();
  }

  static void produce(Path schemas, String bootstrap, String topic, int count, String prefix)
      throws Exception {
    SortedMap<Integer, Schema> all = versions(schemas, "AdEvent");
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
    List<Future<RecordMetadata>> sent = new ArrayList<>();
    List<String> lines = new ArrayList<>();
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
      for (int i = 0; i < count; i++) {
        int version = i % 2 == 0 ? all.lastKey() : all.firstKey();
        Schema schema = all.get(version);
        String eventId = prefix + i;
        GenericRecord event = adEvent(schema, eventId, i);
        ByteBuffer buf = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(event);
        byte[] value = new byte[buf.remaining()];
        buf.get(value);
        ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, null, value);
        rec.headers().add("trace-id", ("trace-" + eventId).getBytes(StandardCharsets.UTF_8));
        sent.add(producer.send(rec));
        lines.add(GenericData.get().toString(event));
      }
      producer.flush();
      for (Future<RecordMetadata> f : sent) {
        f.get(); // a record the broker refused fails the run here
      }
    }
    lines.forEach(System.out::println);
  }
}
