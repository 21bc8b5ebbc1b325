// Reads a `.hlog` with HdrHistogram's own Java reader (Debian libhdrhistogram-java) and prints
// the figures of one tag's histogram summed over every interval (no tag: the untagged one),
// in nanoseconds, for the conformance test to compare with the rig's summary.
//
//   java -cp /usr/share/java/hdrhistogram.jar tests/conformance/HlogCheck.java FILE [TAG]
import java.io.File;
import org.HdrHistogram.EncodableHistogram;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramLogReader;

public class HlogCheck {
    public static void main(String[] args) throws Exception {
        String tag = args.length > 1 && !args[1].isEmpty() ? args[1] : null;
        HistogramLogReader reader = new HistogramLogReader(new File(args[0]));
        Histogram sum = null;
        int intervals = 0;
        EncodableHistogram next;
        while ((next = reader.nextIntervalHistogram()) != null) {
            String its = next.getTag();
            if (tag == null ? its != null : !tag.equals(its)) {
                continue;
            }
            Histogram interval = (Histogram) next;
            if (sum == null) {
                // Auto-resizing: a later interval may hold larger values than the first.
                sum = new Histogram(interval.getNumberOfSignificantValueDigits());
            }
            sum.add(interval);
            intervals++;
        }
        if (sum == null) {
            System.out.println("intervals=0");
            return;
        }
        System.out.printf(
            "intervals=%d count=%d max=%d mean=%.3f p50=%d p90=%d p99=%d p99_9=%d p99_99=%d%n",
            intervals, sum.getTotalCount(), sum.getMaxValue(), sum.getMean(),
            sum.getValueAtPercentile(50.0), sum.getValueAtPercentile(90.0),
            sum.getValueAtPercentile(99.0), sum.getValueAtPercentile(99.9),
            sum.getValueAtPercentile(99.99));
    }
}
